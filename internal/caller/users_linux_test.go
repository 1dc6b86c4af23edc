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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/entrabroker/broker/internal/caller/callertest"
	"github.com/google/go-cmp/cmp"
)

// helperEnv tells a child copy of this test binary to act as a client:
// "<mode> <network> <address>", where mode is raw (a line, then wait for the
// server to close) or http (GET /whoami, print the answer).
const helperEnv = "BROKER_CALLER_TEST_CLIENT"

// callerLine starts the line on which an http helper prints what the
// server saw.
const callerLine = "CALLER "

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
