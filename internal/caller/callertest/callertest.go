//go:build unix

// Package callertest gives tests of caller identity real system users and a
// test binary those users may run, so that a test can start a client as
// another user (exec.Cmd with SysProcAttr.Credential) and check what the
// broker sees. Creating users needs root; RequireRoot skips a test otherwise,
// or fails it when BROKER_REQUIRE_TOOLS=1 (as CI sets).
package callertest

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireToolsEnv names the environment variable that turns a test skipped
// for want of root into a failed one.
const RequireToolsEnv = "BROKER_REQUIRE_TOOLS"

// RequireRoot skips t, saying why, unless the test runs as root and the
// user tools are installed; with BROKER_REQUIRE_TOOLS=1 it fails t instead.
func RequireRoot(t testing.TB) {
	t.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root (to create test users)"
	default:
		for _, tool := range []string{"useradd", "userdel"} {
			if _, err := exec.LookPath(tool); err != nil {
				missing = tool + " on PATH"
			}
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatalf("this test needs %s and %s=1", missing, RequireToolsEnv)
	}
	t.Skipf("SKIP: this test needs %s (set %s=1 to make this a failure)", missing, RequireToolsEnv)
}

// User is a system user created for a test.
type User struct {
	Name  string
	UID   int
	GID   int    // the user's primary group
	Group string // the name of GID
}

// Credential runs a process as u, in u's primary group only.
func (u User) Credential() *syscall.Credential {
	return &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}
}

// AddUser creates the system user name, with a group of the same name, no
// home directory and no login shell, and removes both when t ends. A user of
// that name left over from an earlier run is used as it is (and removed at
// the end). Packages whose tests run in parallel must use different names:
// one package's cleanup would remove the other's user.
func AddUser(t testing.TB, name string) User {
	t.Helper()
	RequireRoot(t)
	err := retryLocked(t, "useradd", "--system", "--no-create-home", "--user-group",
		"--shell", "/usr/sbin/nologin", name)
	var exit *exec.ExitError
	// useradd exits with 9 when the user exists already.
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 9) {
		t.Fatalf("useradd %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := retryLocked(t, "userdel", name); err != nil {
			t.Errorf("userdel %s: %v", name, err)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("look up new user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatalf("look up group %s of new user %s: %v", u.Gid, name, err)
	}
	return User{Name: name, UID: uid, GID: gid, Group: g.Name}
}

// retryLocked runs a user tool, again while another process holds the lock
// of /etc/passwd or /etc/group (the tools do not wait for it), for up to
// about ten seconds.
func retryLocked(t testing.TB, name string, args ...string) error {
	t.Helper()
	for attempt := 0; ; attempt++ {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err == nil {
			return nil
		}
		if !strings.Contains(string(out), "lock") || attempt == 100 {
			return &toolError{err: err, out: strings.TrimSpace(string(out))}
		}
		time.Sleep(100 * time.Millisecond) // polling another process's lock
	}
}

// toolError is a failed user tool with what it printed.
type toolError struct {
	err error
	out string
}

func (e *toolError) Error() string { return e.err.Error() + ": " + e.out }
func (e *toolError) Unwrap() error { return e.err }

// SharedDir returns a new directory that every user may read and enter
// (mode 0755, also its parent), removed when t ends: for sockets and files
// that processes running as test users must reach. t.TempDir is only
// root's.
func SharedDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "broker-callertest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// SharedExecutable copies the running test binary into dir (from SharedDir)
// and returns the copy's path: go test builds it in a directory only its
// owner may enter, so another user could not run it where it is. Run the
// copy with -test.run=^TestName$ to make a child act as a client.
func SharedExecutable(t testing.TB, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(dir, filepath.Base(self))
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}
