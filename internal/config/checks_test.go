package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRemoteListen(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"0.0.0.0:8400":              true,
		"[::]:8400":                 true,
		":8400":                     true,
		"10.0.0.5:8400":             true,
		"[2001:db8::1]:8400":        true,
		"broker.example.com:8400":   true,
		"127.0.0.1:8400":            false,
		"127.10.20.30:8400":         false,
		"[::1]:8400":                false,
		"localhost:8400":            false,
		"LOCALHOST:0":               false,
		"unix:///run/broker.sock":   false,
		"not an address":            false, // checkListen reports it
		"[::ffff:127.0.0.1]:8400":   false,
		"[::ffff:192.168.1.1]:8400": true,
	} {
		if got := remoteListen(addr); got != want {
			t.Errorf("remoteListen(%q) = %v, want %v", addr, got, want)
		}
	}
}

// writeMode writes a file and gives it mode, whatever the umask.
func writeMode(t *testing.T, path string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("secret-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private := writeMode(t, filepath.Join(dir, "private"), 0o400)
	world := writeMode(t, filepath.Join(dir, "world"), 0o644)
	group := writeMode(t, filepath.Join(dir, "group"), 0o640)
	token := writeMode(t, filepath.Join(dir, "token"), 0o644)

	// A Kubernetes secret volume: the file is a symlink through ..data to
	// a file of its own mode. The symlinks' mode (0777) does not count.
	data := filepath.Join(dir, "volume", "..2026_12_07_05_00_00.1")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	writeMode(t, filepath.Join(data, "client-secret"), 0o644)
	writeMode(t, filepath.Join(data, "private-secret"), 0o400)
	for _, link := range [][2]string{
		{"..2026_12_07_05_00_00.1", "..data"},
		{"..data/client-secret", "client-secret"},
		{"..data/private-secret", "private-secret"},
	} {
		if err := os.Symlink(link[0], filepath.Join(dir, "volume", link[1])); err != nil {
			t.Fatal(err)
		}
	}
	k8sWorld := filepath.Join(dir, "volume", "client-secret")
	k8sPrivate := filepath.Join(dir, "volume", "private-secret")

	everyone := func(setting, path string) string {
		return setting + ` "` + path + `" can be read by every user of this machine (mode 0644): make it readable by the broker alone (chmod 0400; in Kubernetes, where secret volumes default to 0644, set the volume's defaultMode: 0400 and, unless the broker runs as root, the pod's securityContext.fsGroup to its group)`
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"nothing to say", Config{Listen: "127.0.0.1:8400", Identity: Identity{ClientSecretFile: private}}, nil},
		{"world-readable secret file", Config{Listen: "127.0.0.1:8400", Identity: Identity{ClientSecretFile: world}}, []string{
			everyone("AZURE_CLIENT_SECRET_FILE", world),
		}},
		{"group-readable certificate of the broker's own user", Config{Identity: Identity{ClientCertificatePath: group}}, []string{
			`AZURE_CLIENT_CERTIFICATE_PATH "` + group + `" can be read by its group (mode 0640), and the broker does not read it through that group: make it readable by the broker alone (chmod 0400, or defaultMode: 0400 in Kubernetes)`,
		}},
		{"a federated token is not a secret file", Config{Identity: Identity{FederatedTokenFile: token}}, nil},
		{"a Kubernetes secret volume, followed through ..data", Config{Identity: Identity{ClientSecretFile: k8sWorld}}, []string{
			everyone("AZURE_CLIENT_SECRET_FILE", k8sWorld),
		}},
		{"a private file behind the volume's symlinks", Config{Identity: Identity{ClientSecretFile: k8sPrivate}}, nil},
		{"a missing file is Validate's to report", Config{Identity: Identity{ClientSecretFile: filepath.Join(dir, "missing")}}, nil},
		{"identities' secret, key and password files", Config{Identities: []Identity{
			{Name: "reports", Source: "broker.yaml:2", ClientSecretFile: world},
			{Name: "billing", Source: "broker.yaml:6", ClientCertificatePath: private, ClientCertificatePasswordFile: world},
			{Name: "workload", Source: "broker.yaml:10", FederatedTokenFile: token},
		}}, []string{
			`broker.yaml:2: identity "reports": ` + everyone("client_secret_file", world),
			`broker.yaml:6: identity "billing": ` + everyone("client_certificate_password_file", world),
		}},
		{"remote listener allowed", Config{Listen: "0.0.0.0:8400", AllowRemoteListen: true}, []string{
			`BROKER_LISTEN "0.0.0.0:8400" is not a loopback address and BROKER_ALLOW_REMOTE_LISTEN=true, so every host that reaches it can ask for tokens (the Host check defends against DNS rebinding and is no access control): make sure a firewall or network policy admits only trusted callers, or listen on 127.0.0.1 or a unix:// socket`,
		}},
		{"allowed but local", Config{Listen: "127.0.0.1:8400", AllowRemoteListen: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, lines(tt.cfg.Warnings())); diff != "" {
				t.Errorf("Warnings() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWarningsGroupOfTheBroker: a file that belongs to another user and
// whose group is the broker's, as the kubelet leaves a secret volume's files
// for the pod's fsGroup, may be read by the group: that is how the broker
// reads it.
func TestWarningsGroupOfTheBroker(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
	dir := t.TempDir()
	fsGroup := writeMode(t, filepath.Join(dir, "fsgroup"), 0o440)
	if err := os.Chown(fsGroup, 65532, os.Getegid()); err != nil {
		t.Fatal(err)
	}
	if got := (Config{Identity: Identity{ClientSecretFile: fsGroup}}).Warnings(); got != nil {
		t.Errorf("Warnings() for a 0440 file of the broker's group = %q, want none", got)
	}
	if err := os.Chown(fsGroup, 65532, 65533); err != nil {
		t.Fatal(err)
	}
	if got := (Config{Identity: Identity{ClientSecretFile: fsGroup}}).Warnings(); len(got) != 1 || !strings.Contains(got[0].Error(), "can be read by its group (mode 0440)") {
		t.Errorf("Warnings() for a 0440 file of another group = %q, want the group warning", got)
	}
}

// TestUnreadableCredentialFile runs only as a user other than root, who
// reads every file.
func TestUnreadableCredentialFile(t *testing.T) {
	t.Parallel()
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	path := writeMode(t, filepath.Join(t.TempDir(), "client-secret"), 0)
	c := Default()
	c.TenantID, c.ClientID, c.ClientSecretFile = tenant, client, path
	want := `AZURE_CLIENT_SECRET_FILE "` + path + `" cannot be read by the broker's user (permission denied): make it readable by the broker's user or group (in Kubernetes, set the pod's securityContext.fsGroup to the broker's group)`
	if err := c.Validate(Serve); err == nil || err.Error() != want {
		t.Errorf("Validate() = %v, want %q", err, want)
	}
}

// lines are the problems' texts, nil for none.
func lines(ps Problems) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Error())
	}
	return out
}
