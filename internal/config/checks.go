package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/entrabroker/broker/internal/azure"
)

// MinIdentityHeader is the shortest BROKER_IDENTITY_HEADER accepted, in
// characters: the header is the only secret that protects /msi/token.
const MinIdentityHeader = 16

// identityHeaderProblem explains an identity header that is too short to
// protect /msi/token; ok is false when it is long enough or not set.
func identityHeaderProblem(h string) (p Problem, ok bool) {
	n := utf8.RuneCountInString(h)
	if n == 0 || n >= MinIdentityHeader {
		return Problem{}, false
	}
	unit := "characters"
	if n == 1 {
		unit = "character"
	}
	return Problem{"BROKER_IDENTITY_HEADER",
		fmt.Sprintf("BROKER_IDENTITY_HEADER is %d %s long, and it is the only secret that protects /msi/token", n, unit),
		fmt.Sprintf("use at least %d random characters, such as the output of openssl rand -hex 16", MinIdentityHeader)}, true
}

// remoteListen reports whether the listen address addr accepts connections
// from other hosts: a TCP address whose host is not loopback (127.0.0.0/8,
// ::1, localhost). An empty host (":8400"), 0.0.0.0 and :: listen on every
// interface. A unix socket is local; an address that does not parse is not
// remote (checkListen reports it).
func remoteListen(addr string) bool {
	if strings.HasPrefix(addr, "unix://") {
		return false
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return !azure.IsLoopbackHost(host)
}

// checkReadable opens the file at path as the broker will, following
// symlinks (a Kubernetes volume's files are symlinks into its "..data"
// directory), and says why it cannot be used and what to do: it does not
// exist, the broker's user may not read it, or it is not a regular file.
// what is empty when it can be used. The file's content is not read.
func checkReadable(path string) (what, fix string) {
	fi, err := os.Stat(path)
	if err == nil && fi.IsDir() {
		return "is a directory", "name the file in it that holds the credential"
	}
	if err == nil && !fi.Mode().IsRegular() {
		// Opening a named pipe would block: it is refused unopened.
		return "is not a regular file", "name the file that holds the credential"
	}
	if err == nil {
		var file *os.File
		if file, err = os.Open(path); err == nil {
			_ = file.Close()
			return "", ""
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist", "check the path, and in Kubernetes the volume mount that provides the file"
	case errors.Is(err, fs.ErrPermission):
		return "cannot be read by the broker's user (permission denied)", "make it readable by the broker's user or group (in Kubernetes, set the pod's securityContext.fsGroup to the broker's group)"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Sprintf("cannot be read (%v)", err), "check the path and the file"
}

// permissionProblem says who else may read the file at path, when someone
// who need not can, and what to do; what is "" when only the broker can (or the file cannot be stat'ed,
// which Validate reports).
//
// Others' bits always count. The group's bits count unless the broker reads
// the file through its group: it is not the file's owner and the file's
// group is one of the broker's groups. That is how a Kubernetes secret
// volume is read by a container that does not run as root (the files belong
// to root, their group is the pod's fsGroup, and the kubelet adds the
// group's read bit whatever defaultMode says).
func permissionProblem(path string) (what, fix string) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return "", ""
	}
	mode := fi.Mode().Perm()
	switch {
	case mode&0o007 != 0:
		return fmt.Sprintf("can be read by every user of this machine (mode %04o)", mode),
			"make it readable by the broker alone (chmod 0400; in Kubernetes, where secret volumes default to 0644, set the volume's defaultMode: 0400 and, unless the broker runs as root, the pod's securityContext.fsGroup to its group)"
	case mode&0o070 != 0 && !readsThroughGroup(fi):
		return fmt.Sprintf("can be read by its group (mode %04o), and the broker does not read it through that group", mode),
			"make it readable by the broker alone (chmod 0400, or defaultMode: 0400 in Kubernetes)"
	}
	return "", ""
}

// readsThroughGroup reports whether this process reads the file fi through
// the file's group: it is not the owner, and the group is one of its own.
func readsThroughGroup(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() {
		return false
	}
	gid := int(st.Gid)
	if gid == os.Getegid() {
		return true
	}
	groups, err := os.Getgroups()
	return err == nil && slices.Contains(groups, gid)
}

// Warnings lists what c allows but should not: a BROKER_LISTEN that other
// hosts can reach (with BROKER_ALLOW_REMOTE_LISTEN=true), and secret, key
// and password files that others than the broker can read. It stats the
// files, so call it on the configuration that will run (broker demo drops
// the credential settings). serve logs each as a warning at start; check
// shows them.
func (c Config) Warnings() Problems {
	var out Problems
	if c.AllowRemoteListen && remoteListen(c.Listen) {
		out = append(out, Problem{"BROKER_LISTEN",
			fmt.Sprintf("BROKER_LISTEN %q is not a loopback address and BROKER_ALLOW_REMOTE_LISTEN=true, so every host that reaches it can ask for tokens (the Host check defends against DNS rebinding and is no access control)", c.Listen),
			"make sure a firewall or network policy admits only trusted callers, or listen on 127.0.0.1 or a unix:// socket"})
	}
	for _, id := range append([]Identity{c.envIdentity()}, c.Identities...) {
		for _, f := range id.files() {
			if what, fix := permissionProblem(f.path); f.secret && what != "" {
				out = append(out, Problem{f.setting, fmt.Sprintf("%s%s %q %s", id.prefix(), f.setting, f.path, what), fix})
			}
		}
	}
	return out
}
