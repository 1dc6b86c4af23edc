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

// The fixes for a placeholder tenant or client ID.
const (
	replaceTenant = "replace the placeholder with your app's Directory (tenant) ID from the portal (the app registration's Overview page)"
	replaceClient = "replace the placeholder with your app's Application (client) ID from the portal (the app registration's Overview page)"
)

// identityHeaderProblem explains an identity header that is too short to
// protect /msi/token; "" when it is long enough or not set.
func identityHeaderProblem(h string) string {
	n := utf8.RuneCountInString(h)
	if n == 0 || n >= MinIdentityHeader {
		return ""
	}
	unit := "characters"
	if n == 1 {
		unit = "character"
	}
	return fmt.Sprintf("BROKER_IDENTITY_HEADER is %d %s long, and it is the only secret that protects /msi/token: use at least %d random characters, such as the output of openssl rand -hex 16", n, unit, MinIdentityHeader)
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

// credentialFile is a file named by a credential setting.
type credentialFile struct {
	// setting names it: AZURE_CLIENT_SECRET_FILE, or an identity's key
	// such as client_secret_file.
	setting string
	path    string
	// secret reports that the file holds a secret, a private key or a
	// password, which no other user may read. A federated token is not one:
	// it is short-lived, and its mode is the kubelet's.
	secret bool
}

// envFiles are the credential files the environment's identity names.
func (c Config) envFiles() []credentialFile {
	var out []credentialFile
	for _, f := range []credentialFile{
		{"AZURE_CLIENT_SECRET_FILE", c.ClientSecretFile, true},
		{"AZURE_CLIENT_CERTIFICATE_PATH", c.ClientCertificatePath, true},
		{"AZURE_FEDERATED_TOKEN_FILE", c.FederatedTokenFile, false},
	} {
		if f.path != "" {
			out = append(out, f)
		}
	}
	return out
}

// files are the credential files the identity names.
func (id Identity) files() []credentialFile {
	var out []credentialFile
	for _, f := range []credentialFile{
		{"client_secret_file", id.ClientSecretFile, true},
		{"client_certificate_path", id.ClientCertificatePath, true},
		{"client_certificate_password_file", id.ClientCertificatePasswordFile, true},
		{"federated_token_file", id.FederatedTokenFile, false},
	} {
		if f.path != "" {
			out = append(out, f)
		}
	}
	return out
}

// checkReadable opens f's file as the broker will, following symlinks (a
// Kubernetes volume's files are symlinks into its "..data" directory), and
// says why it cannot be used: it does not exist, the broker's user may not
// read it, or it is not a regular file. The file's content is not read.
func checkReadable(f credentialFile) error {
	fi, err := os.Stat(f.path)
	if err == nil && fi.IsDir() {
		return errors.New("is a directory: name the file in it that holds the credential")
	}
	if err == nil && !fi.Mode().IsRegular() {
		// Opening a named pipe would block: it is refused unopened.
		return errors.New("is not a regular file: name the file that holds the credential")
	}
	if err == nil {
		var file *os.File
		if file, err = os.Open(f.path); err == nil {
			return file.Close()
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("does not exist: check the path, and in Kubernetes the volume mount that provides the file")
	case errors.Is(err, fs.ErrPermission):
		return errors.New("cannot be read by the broker's user (permission denied): make it readable by the broker's user or group (in Kubernetes, set the pod's securityContext.fsGroup to the broker's group)")
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("cannot be read (%w): check the path and the file", err)
}

// permissionProblem says who else may read f's file, when someone who need
// not can; "" when only the broker can (or the file cannot be stat'ed,
// which Validate reports).
//
// Others' bits always count. The group's bits count unless the broker reads
// the file through its group: it is not the file's owner and the file's
// group is one of the broker's groups. That is how a Kubernetes secret
// volume is read by a container that does not run as root (the files belong
// to root, their group is the pod's fsGroup, and the kubelet adds the
// group's read bit whatever defaultMode says).
func permissionProblem(f credentialFile) string {
	fi, err := os.Stat(f.path)
	if err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	mode := fi.Mode().Perm()
	switch {
	case mode&0o007 != 0:
		return fmt.Sprintf("can be read by every user of this machine (mode %04o): make it readable by the broker alone (chmod 0400; in Kubernetes, where secret volumes default to 0644, set the volume's defaultMode: 0400 and, unless the broker runs as root, the pod's securityContext.fsGroup to its group)", mode)
	case mode&0o070 != 0 && !readsThroughGroup(fi):
		return fmt.Sprintf("can be read by its group (mode %04o), and the broker does not read it through that group: make it readable by the broker alone (chmod 0400, or defaultMode: 0400 in Kubernetes)", mode)
	}
	return ""
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

// Warnings lists what c allows but should not, one line each in the form
// "<what>: <what to do>": a BROKER_LISTEN that other hosts can reach (with
// BROKER_ALLOW_REMOTE_LISTEN=true), and secret, key and password files that
// others than the broker can read. It stats the files, so call it on the
// configuration that will run (broker demo drops the credential settings).
// serve logs each line as a warning at start; check shows them.
func (c Config) Warnings() []string {
	var out []string
	if c.AllowRemoteListen && remoteListen(c.Listen) {
		out = append(out, fmt.Sprintf("BROKER_LISTEN %q is not a loopback address and BROKER_ALLOW_REMOTE_LISTEN=true, so every host that reaches it can ask for tokens (the Host check defends against DNS rebinding and is no access control): make sure a firewall or network policy admits only trusted callers, or listen on 127.0.0.1 or a unix:// socket", c.Listen))
	}
	for _, f := range c.envFiles() {
		if p := permissionProblem(f); f.secret && p != "" {
			out = append(out, fmt.Sprintf("%s %q %s", f.setting, f.path, p))
		}
	}
	for _, id := range c.Identities {
		for _, f := range id.files() {
			if p := permissionProblem(f); f.secret && p != "" {
				out = append(out, fmt.Sprintf("%s: identity %q: %s %q %s", id.Source, id.Name, f.setting, f.path, p))
			}
		}
	}
	return out
}
