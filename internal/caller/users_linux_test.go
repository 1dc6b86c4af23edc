package caller

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/caller/callertest"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// helperEnv tells a child copy of this test binary to act as a client:
// "<mode> <network> <address>", where mode is raw (a line, then wait for the
// server to close), http (GET /whoami, print the answer), handoff (a line,
// then pass the connection to a new "hold" process, print its pid and exit)
// or hold (wait on the connection passed as file descriptor 3 until the
// server closes it).
const helperEnv = "BROKER_CALLER_TEST_CLIENT"

// callerLine starts the line on which an http helper prints what the
// server saw; holderLine the one on which a handoff helper prints the pid of
// the process it passed its connection to.
const (
	callerLine = "CALLER "
	holderLine = "HOLDER "
)

// TestHelperClient is the client that TestRealUsers runs as other users.
func TestHelperClient(t *testing.T) {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		t.Skip("a helper process: runs only as a child of TestRealUsers")
	}
	f := strings.Fields(spec)
	if len(f) != 3 {
		t.Fatalf("%s=%q, want mode, network and address", helperEnv, spec)
	}
	mode, network, addr := f[0], f[1], f[2]
	switch mode {
	case "hold":
		if _, err := io.ReadAll(os.NewFile(3, "connection")); err != nil {
			t.Fatal(err)
		}
	case "handoff":
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			t.Fatal(err)
		}
		file, err := c.(interface{ File() (*os.File, error) }).File()
		if err != nil {
			t.Fatal(err)
		}
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		// No standard output or error: the parent waits for this process
		// alone, not for the holder, which outlives it.
		holder := exec.Command(self, "-test.run=^TestHelperClient$")
		holder.Env = append(os.Environ(), helperEnv+"=hold - -")
		holder.ExtraFiles = []*os.File{file}
		if err := holder.Start(); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("%s%d\n", holderLine, holder.Process.Pid)
	case "raw":
		c, err := net.Dial(network, addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(c); err != nil { // until the server is done
			t.Fatal(err)
		}
	case "http":
		client := &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}}
		req, err := http.NewRequest("GET", "http://broker/whoami", nil)
		if err != nil {
			t.Fatal(err)
		}
		// What a caller sends plays no part in who it is.
		req.Header.Set("X-Forwarded-For", "10.1.2.3")
		req.Header.Set("X-Forwarded-User", "root")
		req.Header.Set("Forwarded", "for=10.1.2.3;by=root")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("%s%s\n", callerLine, body)
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

// TestRealUsers runs clients as two real system users, over a unix socket
// and TCP loopback (IPv4, IPv6, and IPv4 to an IPv6 socket), and checks that
// the server names each by uid, gid, user, group, pid and executable, both
// through Identify and through http.Server.ConnContext.
func TestRealUsers(t *testing.T) {
	callertest.RequireRoot(t)
	users := []callertest.User{
		callertest.AddUser(t, "broker-test-a"),
		callertest.AddUser(t, "broker-test-b"),
	}
	dir := callertest.SharedDir(t)
	exe := callertest.SharedExecutable(t, dir)
	n := 0
	transports := []struct {
		name    string
		network string
		listen  func(t *testing.T) net.Listener
	}{
		{"unix", "unix", func(t *testing.T) net.Listener {
			n++
			path := filepath.Join(dir, fmt.Sprintf("%d.sock", n))
			ln := listen(t, "unix", path)
			if err := os.Chmod(path, 0o666); err != nil {
				t.Fatal(err)
			}
			return ln
		}},
		{"tcp4", "tcp", func(t *testing.T) net.Listener { return listen(t, "tcp4", "127.0.0.1:0") }},
		{"tcp6", "tcp", func(t *testing.T) net.Listener { return listen(t, "tcp6", "[::1]:0") }},
		{"tcp4 to an IPv6 socket", "tcp", dualStack},
	}
	for _, tr := range transports {
		for _, u := range users {
			for _, mode := range []string{"raw", "http"} {
				t.Run(tr.name+"/"+u.Name+"/"+mode, func(t *testing.T) {
					ln := tr.listen(t)
					// The child dials what the listener says, but an
					// IPv6 socket's v4-mapped address as plain IPv4.
					addr := ln.Addr().String()
					if tr.name == "tcp4 to an IPv6 socket" {
						addr = strings.Replace(addr, "[::ffff:127.0.0.1]", "127.0.0.1", 1)
					}
					cmd := exec.Command(exe, "-test.run=^TestHelperClient$")
					cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s", helperEnv, mode, ln.Addr().Network(), addr),
						// The race detector waits a second at exit by default.
						"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
					cmd.Dir = dir
					cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
					var got, gotUser Caller
					var out []byte
					switch mode {
					case "raw":
						seen := make(chan Caller, 1)
						go func() {
							c, err := ln.Accept()
							if err != nil {
								return // the child failed; its output says why
							}
							defer c.Close()
							bufio.NewReader(c).ReadString('\n')
							seen <- Identify(c)
						}()
						out = runChild(t, cmd)
						got = <-seen
					case "http":
						srv := &http.Server{
							ConnContext: ConnContext,
							Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
								// The cheap part first, as a policy
								// check would ask, then everything.
								json.NewEncoder(w).Encode([]Caller{UserFromContext(r.Context()), FromContext(r.Context())})
							}),
							// A stuck child fails the test instead of hanging it.
							ReadHeaderTimeout: 10 * time.Second,
						}
						go srv.Serve(ln)
						defer srv.Close()
						out = runChild(t, cmd)
						gotUser, got = parseCallerLine(t, out)
					}
					want := Caller{Known: true, Network: tr.network, UID: u.UID, GID: u.GID,
						PID: cmd.Process.Pid, User: u.Name, Group: u.Group, Exe: exe}
					if diff := cmp.Diff(want, got); diff != "" {
						t.Errorf("caller seen by the server (-want +got):\n%s\nchild output:\n%s", diff, out)
					}
					if mode != "http" {
						return
					}
					// Only a TCP peer's process takes a search.
					if tr.network == "tcp" {
						want.GID, want.Group, want.PID, want.Exe = -1, "", -1, ""
					}
					if diff := cmp.Diff(want, gotUser); diff != "" {
						t.Errorf("UserFromContext (-want +got):\n%s", diff)
					}
				})
			}
		}
	}
}

// TestHandedOffConnection: the process that connected exits and leaves its
// connection to a child. Over TCP the broker names the child, which holds
// the socket now; over a unix socket the kernel names the process that
// connected, and the broker, holding a pidfd of it, sees that it is gone and
// names no process rather than whatever process reuses its pid.
func TestHandedOffConnection(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		network string
		ln      func(t *testing.T) net.Listener
	}{
		{"unix", "unix", func(t *testing.T) net.Listener {
			return listen(t, "unix", filepath.Join(t.TempDir(), "broker.sock"))
		}},
		{"tcp", "tcp", func(t *testing.T) net.Listener { return listen(t, "tcp4", "127.0.0.1:0") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.network == "unix" && !havePeerPidfd(t) {
				t.Skip("SKIP: the kernel has no SO_PEERPIDFD (Linux 6.5): a unix peer's pid may be stale, as documented")
			}
			ln := tt.ln(t)
			cmd := exec.Command(exe, "-test.run=^TestHelperClient$")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=handoff %s %s", helperEnv, ln.Addr().Network(), ln.Addr()),
				"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					close(accepted)
					return
				}
				bufio.NewReader(c).ReadString('\n')
				accepted <- c
			}()
			out := runChild(t, cmd) // the one that connected has exited and been reaped
			c, ok := <-accepted
			if !ok {
				t.Fatalf("no connection; client printed:\n%s", out)
			}
			defer c.Close() // which ends the holder
			var holder int
			for line := range strings.Lines(string(out)) {
				if pid, ok := strings.CutPrefix(strings.TrimSpace(line), holderLine); ok {
					holder, _ = strconv.Atoi(pid)
				}
			}
			if holder <= 0 {
				t.Fatalf("client printed no holder pid:\n%s", out)
			}
			want := self(t, tt.network)
			if tt.network == "tcp" {
				want.PID = holder
			} else {
				want.PID, want.Exe = -1, ""
			}
			if diff := cmp.Diff(want, Identify(c)); diff != "" {
				t.Errorf("Identify (-want +got):\n%s", diff)
			}
		})
	}
}

// havePeerPidfd reports whether the kernel offers SO_PEERPIDFD.
func havePeerPidfd(t *testing.T) bool {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	pidfd, err := unix.GetsockoptInt(fds[0], unix.SOL_SOCKET, soPeerPidfd())
	if err == nil {
		unix.Close(pidfd)
	}
	return err == nil
}

// runChild runs cmd and returns its standard output, failing t if it fails.
func runChild(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("client: %v\nstdout:\n%s\nstderr:\n%s", err, out, exit.Stderr)
		}
		t.Fatalf("client: %v", err)
	}
	return out
}

// parseCallerLine reads what an http helper printed: the caller as
// UserFromContext and as FromContext saw it.
func parseCallerLine(t *testing.T, out []byte) (user, full Caller) {
	t.Helper()
	for line := range strings.Lines(string(out)) {
		if js, ok := strings.CutPrefix(line, callerLine); ok {
			var c []Caller
			if err := json.Unmarshal([]byte(js), &c); err != nil || len(c) != 2 {
				t.Fatalf("client printed %q: %v", line, err)
			}
			return c[0], c[1]
		}
	}
	t.Fatalf("client printed no %q line:\n%s", callerLine, out)
	return Caller{}, Caller{}
}
