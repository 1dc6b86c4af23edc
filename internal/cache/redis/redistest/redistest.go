// Package redistest runs a real redis-server (the Debian package) for
// tests and load runs: on a free loopback port and a unix socket in a
// directory of its own, with no persistence. New skips a test when
// redis-server is not installed, or fails it when BROKER_REQUIRE_TOOLS=1
// (as CI sets).
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// RequireToolsEnv names the environment variable that turns a test skipped
// for want of redis-server into a failed one.
const RequireToolsEnv = "BROKER_REQUIRE_TOOLS"

// Server is a running redis-server.
type Server struct {
	// Addr is its loopback host:port.
	Addr string
	// Socket is the path of its unix socket.
	Socket string
	// Client talks to it with generous timeouts, for the test's own
	// commands (DEBUG SLEEP, FLUSHALL, SCAN).
	Client *goredis.Client

	bin string
	dir string
	cmd *exec.Cmd
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://" + s.Addr }

// UnixURL is the server's unix:// URL.
func (s *Server) UnixURL() string { return "unix://" + s.Socket }

// New starts a server for t and stops it when t ends.
func New(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(RequireToolsEnv) == "1" {
			t.Fatalf("this test needs redis-server on PATH (apt-get install redis-server) and %s=1", RequireToolsEnv)
		}
		t.Skipf("SKIP: this test needs redis-server on PATH (apt-get install redis-server; set %s=1 to make this a failure)", RequireToolsEnv)
	}
	s, err := Start(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Start runs the redis-server binary bin with its socket in dir, on a free
// loopback port, and waits until it answers PING.
func Start(bin, dir string) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &Server{Addr: addr, Socket: filepath.Join(dir, "redis.sock"), bin: bin, dir: dir}
	s.Client = goredis.NewClient(&goredis.Options{
		Network: "unix", Addr: s.Socket, DisableIdentity: true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		// Generous: the test's own commands must outlast a paused server.
		ReadTimeout: 30 * time.Second, MaxRetries: -1,
	})
	if err := s.start(); err != nil {
		_ = s.Client.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	s.cmd = exec.Command(s.bin,
		"--bind", "127.0.0.1", "--port", port,
		"--unixsocket", s.Socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--enable-debug-command", "yes", "--loglevel", "warning")
	out, err := os.Create(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return err
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("redistest: start redis-server: %w", err)
	}
	go func(c *exec.Cmd) { _ = c.Wait() }(s.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.Client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.Kill()
			return fmt.Errorf("redistest: redis-server did not answer within 10 s: %w\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill ends the server at once (SIGKILL), like a crash.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		for i := 0; i < 200 && s.alive(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (s *Server) alive() bool {
	c, err := net.DialTimeout("tcp", s.Addr, 50*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Restart starts a killed server again, empty, on the same port and socket.
func (s *Server) Restart() error {
	_ = os.Remove(s.Socket)
	return s.start()
}

// Stop kills the server and closes the client.
func (s *Server) Stop() {
	s.Kill()
	_ = s.Client.Close()
}

// Dump returns every key of the server with its value (strings only; the
// broker writes no other type).
func (s *Server) Dump(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	iter := s.Client.Scan(ctx, 0, "*", 100).Iterator()
	for k := range iter.Vals(ctx) {
		v, err := s.Client.Get(ctx, k).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, iter.Err()
}
