package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/entrabroker/broker/internal/config"
)

// TestRedisComponent checks the fleet component (kubernetes/redis): the
// broker reads the Redis URL from a Secret and the key file from a mounted
// Secret, the example Secret holds placeholders only, and the component
// lists every manifest of its directory.
func TestRedisComponent(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("kubernetes", "redis")
	var comp struct {
		APIVersion string   `yaml:"apiVersion"`
		Kind       string   `yaml:"kind"`
		Resources  []string `yaml:"resources"`
		Patches    []struct {
			Path string `yaml:"path"`
		} `yaml:"patches"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(dir, "kustomization.yaml"))), &comp); err != nil {
		t.Fatal(err)
	}
	if comp.APIVersion != "kustomize.config.k8s.io/v1alpha1" || comp.Kind != "Component" {
		t.Errorf("kubernetes/redis is %s %s, want a kustomize Component", comp.APIVersion, comp.Kind)
	}
	listed := slices.Clone(comp.Resources)
	for _, p := range comp.Patches {
		listed = append(listed, p.Path)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".yaml") && e.Name() != "kustomization.yaml" && !slices.Contains(listed, e.Name()) {
			t.Errorf("%s is not listed in %s/kustomization.yaml", e.Name(), dir)
		}
	}

	var s secret
	docs, err := readManifests(filepath.Join(dir, "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := docs[0].decode(&s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"password", "url", "redis.key"} {
		if v, ok := s.StringData[k]; !ok || !isPlaceholder(v) {
			t.Errorf("example Secret key %s = %q, want a <placeholder>", k, v)
		}
	}

	var patch deployment
	docs, err = readManifests(filepath.Join(dir, "broker-patch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := docs[0].decode(&patch); err != nil {
		t.Fatal(err)
	}
	var broker container
	for _, c := range patch.Spec.Template.Spec.InitContainers {
		if c.Name == "broker" {
			broker = c
		}
	}
	env := envMap(broker)
	for name := range env {
		if !slices.Contains(config.EnvNames(), name) {
			t.Errorf("the patch sets %s, which the broker does not read", name)
		}
	}
	if ref := secretRef(env["BROKER_REDIS_URL"]); ref == nil || ref.Name != s.Metadata.Name {
		t.Errorf("BROKER_REDIS_URL is not read from the %s Secret (it may hold a password)", s.Metadata.Name)
	}
	keyFile := env["BROKER_REDIS_KEY_FILE"].Value
	mounted := false
	for _, m := range broker.VolumeMounts {
		mounted = mounted || strings.HasPrefix(keyFile, m.MountPath+"/") && m.ReadOnly
	}
	if keyFile == "" || !mounted {
		t.Errorf("BROKER_REDIS_KEY_FILE = %q, want a file in a read-only volume mount of the broker", keyFile)
	}
}

// TestRedisComponentBuilds builds both variants with the component with
// kubectl kustomize, when kubectl is installed.
func TestRedisComponentBuilds(t *testing.T) {
	t.Parallel()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("SKIP: kubectl is not installed")
	}
	for _, variant := range []string{"kubernetes", "kubernetes/workload-identity"} {
		t.Run(variant, func(t *testing.T) {
			t.Parallel()
			root := t.TempDir()
			if err := os.CopyFS(filepath.Join(root, "k"), os.DirFS("kubernetes")); err != nil {
				t.Fatal(err)
			}
			over := filepath.Join(root, "overlay")
			if err := os.Mkdir(over, 0o755); err != nil {
				t.Fatal(err)
			}
			k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../k" +
				strings.TrimPrefix(variant, "kubernetes") + "\ncomponents:\n  - ../k/redis\n"
			if err := os.WriteFile(filepath.Join(over, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(kubectl, "kustomize", over).CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl kustomize: %v\n%s", err, out)
			}
			for _, want := range []string{"BROKER_REDIS_URL", "BROKER_REDIS_KEY_FILE", "BROKER_LISTEN", "kind: Service", "name: broker-redis"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("the built manifests lack %q", want)
				}
			}
		})
	}
}
