package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/entrabroker/broker/internal/config"
)

// The Kubernetes types below model only the fields the checks read.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type deployment struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	ServiceAccountName           string           `yaml:"serviceAccountName"`
	AutomountServiceAccountToken *bool            `yaml:"automountServiceAccountToken"`
	SecurityContext              *securityContext `yaml:"securityContext"`
	InitContainers               []container      `yaml:"initContainers"`
	Containers                   []container      `yaml:"containers"`
	Volumes                      []volume         `yaml:"volumes"`
}

type container struct {
	Name            string           `yaml:"name"`
	Image           string           `yaml:"image"`
	RestartPolicy   string           `yaml:"restartPolicy"`
	Args            []string         `yaml:"args"`
	Ports           []containerPort  `yaml:"ports"`
	Env             []envVar         `yaml:"env"`
	VolumeMounts    []volumeMount    `yaml:"volumeMounts"`
	StartupProbe    *probe           `yaml:"startupProbe"`
	ReadinessProbe  *probe           `yaml:"readinessProbe"`
	LivenessProbe   *probe           `yaml:"livenessProbe"`
	Resources       resources        `yaml:"resources"`
	SecurityContext *securityContext `yaml:"securityContext"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		SecretKeyRef     *keyRef `yaml:"secretKeyRef"`
		ConfigMapKeyRef  *keyRef `yaml:"configMapKeyRef"`
		ResourceFieldRef *struct {
			Resource string `yaml:"resource"`
		} `yaml:"resourceFieldRef"`
	} `yaml:"valueFrom"`
}

type keyRef struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type volumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`
	SubPath   string `yaml:"subPath"`
	ReadOnly  bool   `yaml:"readOnly"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
	PeriodSeconds    int `yaml:"periodSeconds"`
	FailureThreshold int `yaml:"failureThreshold"`
}

type resources struct {
	Requests map[string]string `yaml:"requests"`
	Limits   map[string]string `yaml:"limits"`
}

type securityContext struct {
	ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
	RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
	RunAsUser                *int64 `yaml:"runAsUser"`
	AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	Privileged               *bool  `yaml:"privileged"`
	Capabilities             *struct {
		Add  []string `yaml:"add"`
		Drop []string `yaml:"drop"`
	} `yaml:"capabilities"`
	SeccompProfile *struct {
		Type string `yaml:"type"`
	} `yaml:"seccompProfile"`
}

type volume struct {
	Name   string `yaml:"name"`
	Secret *struct {
		SecretName  string `yaml:"secretName"`
		DefaultMode *int   `yaml:"defaultMode"`
		Items       []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	Projected *struct {
		DefaultMode *int `yaml:"defaultMode"`
		Sources     []struct {
			ServiceAccountToken *struct {
				Path              string `yaml:"path"`
				Audience          string `yaml:"audience"`
				ExpirationSeconds int    `yaml:"expirationSeconds"`
			} `yaml:"serviceAccountToken"`
		} `yaml:"sources"`
	} `yaml:"projected"`
}

type secret struct {
	Metadata   objectMeta        `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
}

type serviceAccount struct {
	Metadata                     objectMeta `yaml:"metadata"`
	AutomountServiceAccountToken *bool      `yaml:"automountServiceAccountToken"`
}

type podMonitor struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		PodMetricsEndpoints []struct {
			Port        string `yaml:"port"`
			Path        string `yaml:"path"`
			Relabelings []struct {
				Action      string `yaml:"action"`
				TargetLabel string `yaml:"targetLabel"`
				Replacement string `yaml:"replacement"`
			} `yaml:"relabelings"`
		} `yaml:"podMetricsEndpoints"`
	} `yaml:"spec"`
}

type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Resources  []string `yaml:"resources"`
	Images     []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// document is one YAML document of a manifest file.
type document struct {
	File string
	Kind string
	Node *yaml.Node
}

// decode decodes the document into v.
func (d document) decode(v any) error { return d.Node.Decode(v) }

// readManifests decodes every document of a multi-document YAML file and
// checks that each is a Kubernetes object with apiVersion, kind and a name.
func readManifests(path string) ([]document, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []document
	for {
		var n yaml.Node
		if err := dec.Decode(&n); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var head struct {
			APIVersion string     `yaml:"apiVersion"`
			Kind       string     `yaml:"kind"`
			Metadata   objectMeta `yaml:"metadata"`
		}
		if err := n.Decode(&head); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if head.APIVersion == "" || head.Kind == "" {
			return nil, fmt.Errorf("%s: a document without apiVersion or kind", path)
		}
		if head.Metadata.Name == "" && head.Kind != "Kustomization" {
			return nil, fmt.Errorf("%s: %s without metadata.name", path, head.Kind)
		}
		docs = append(docs, document{File: path, Kind: head.Kind, Node: &n})
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: no documents", path)
	}
	return docs, nil
}

// variant is one kustomization directory, loaded.
type variant struct {
	Dir            string
	Kustomization  kustomization
	Deployment     deployment
	Secret         secret
	ServiceAccount serviceAccount
	PodMonitor     podMonitor
	PodMonitorNode *yaml.Node
}

// broker returns the broker sidecar: the init container named broker.
func (v variant) broker(t *testing.T) container {
	t.Helper()
	for _, c := range v.Deployment.Spec.Template.Spec.InitContainers {
		if c.Name == "broker" {
			return c
		}
	}
	t.Fatalf("%s: no init container named broker", v.Dir)
	return container{}
}

// app returns the application container.
func (v variant) app(t *testing.T) container {
	t.Helper()
	cs := v.Deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%s: %d containers, want the one app container", v.Dir, len(cs))
	}
	return cs[0]
}

// loadVariant reads a kustomization directory and the objects it lists.
func loadVariant(t *testing.T, dir string) variant {
	t.Helper()
	v := variant{Dir: dir}
	kdocs, err := readManifests(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		t.Fatalf("kustomization: %v", err)
	}
	if err := kdocs[0].decode(&v.Kustomization); err != nil {
		t.Fatalf("kustomization: %v", err)
	}
	kinds := map[string]int{}
	for _, r := range v.Kustomization.Resources {
		docs, err := readManifests(filepath.Join(dir, r))
		if err != nil {
			t.Fatalf("resource %s: %v", r, err)
		}
		for _, d := range docs {
			kinds[d.Kind]++
			var target any
			switch d.Kind {
			case "Deployment":
				target = &v.Deployment
			case "Secret":
				target = &v.Secret
			case "ServiceAccount":
				target = &v.ServiceAccount
			case "PodMonitor":
				target = &v.PodMonitor
				v.PodMonitorNode = d.Node
			default:
				t.Fatalf("%s: unexpected kind %s", d.File, d.Kind)
			}
			if err := d.decode(target); err != nil {
				t.Fatalf("%s: %s: %v", d.File, d.Kind, err)
			}
		}
	}
	// The kustomization never applies a Secret: it would overwrite the real
	// one with placeholders. The example Secret stays beside it.
	want := map[string]int{"Deployment": 1, "ServiceAccount": 1, "PodMonitor": 1}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Fatalf("%s: objects by kind of the kustomization's resources (-want +got):\n%s", dir, diff)
	}
	docs, err := readManifests(filepath.Join(dir, exampleSecret))
	if err != nil {
		t.Fatalf("example Secret: %v", err)
	}
	if len(docs) != 1 || docs[0].Kind != "Secret" {
		t.Fatalf("%s/%s: want one Secret", dir, exampleSecret)
	}
	if err := docs[0].decode(&v.Secret); err != nil {
		t.Fatalf("%s/%s: %v", dir, exampleSecret, err)
	}
	return v
}

// exampleSecret is the file beside each kustomization that shows the Secret
// to create; it is not one of the kustomization's resources.
const exampleSecret = "secret.example.yaml"

// variants are the kustomization directories under deploy/kubernetes.
var variants = []string{
	filepath.Join("kubernetes"),
	filepath.Join("kubernetes", "workload-identity"),
}

// The contract the manifests must follow (design.md).
const (
	// brokerImageRepo is a placeholder on a reserved domain: no broker
	// image is published, so a user builds one and names it (kustomize
	// edit set image), and a forgotten step fails plainly at the pull.
	brokerImageRepo = "registry.example.com/broker"
	apiPort         = 8400
	opsPort         = 9400
	msiPath         = "/msi/token"
	logAnalytics    = "https://api.loganalytics.io/.default"
	nonRootUID      = 65532
	federatedAud    = "api://AzureADTokenExchange"
)

func TestManifestsParse(t *testing.T) {
	t.Parallel()
	err := filepath.WalkDir("kubernetes", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		_, err = readManifests(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestKustomizations(t *testing.T) {
	t.Parallel()
	for _, dir := range variants {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			v := loadVariant(t, dir)
			k := v.Kustomization
			if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
				t.Errorf("kustomization is %s %s, want kustomize.config.k8s.io/v1beta1 Kustomization", k.APIVersion, k.Kind)
			}
			// Every listed resource exists (loadVariant read it), and every
			// manifest in the directory is listed.
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") || e.Name() == "kustomization.yaml" || e.Name() == exampleSecret {
					continue
				}
				if !slices.Contains(k.Resources, e.Name()) {
					t.Errorf("%s is not listed in %s/kustomization.yaml", e.Name(), dir)
				}
			}
			if slices.Contains(k.Resources, exampleSecret) {
				t.Errorf("%s/kustomization.yaml applies %s: it would overwrite the real Secret with placeholders", dir, exampleSecret)
			}
			// The image override names the image the Deployment uses.
			repo, tag := splitImage(v.broker(t).Image)
			if len(k.Images) != 1 || k.Images[0].Name != repo || k.Images[0].NewTag != tag || k.Images[0].NewName != "" {
				t.Errorf("kustomization images = %+v, want one entry {Name: %s NewTag: %s}", k.Images, repo, tag)
			}
			// No image is published: the kustomization says plainly how to
			// build one and name it, and how to create the Secret.
			text := readFile(t, filepath.Join(dir, "kustomization.yaml"))
			for _, want := range []string{
				"no broker image is published",
				"docker build -t <registry>/broker:<tag> .",
				"kustomize edit set image " + repo + "=<registry>/broker:<tag>",
				"kubectl create secret generic " + v.Secret.Metadata.Name,
			} {
				if !strings.Contains(text, want) {
					t.Errorf("%s/kustomization.yaml does not say %q", dir, want)
				}
			}
		})
	}
}

// splitImage splits an image reference into repository and tag.
func splitImage(ref string) (repo, tag string) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, ""
	}
	return ref[:i], ref[i+1:]
}

func TestImagesAgree(t *testing.T) {
	t.Parallel()
	var images []string
	for _, dir := range variants {
		v := loadVariant(t, dir)
		img := v.broker(t).Image
		repo, tag := splitImage(img)
		if repo != brokerImageRepo {
			t.Errorf("%s: broker image %s, want repository %s", dir, img, brokerImageRepo)
		}
		if tag == "" || tag == "latest" {
			t.Errorf("%s: broker image %s, want a pinned tag", dir, img)
		}
		images = append(images, img)
	}
	if len(slices.Compact(slices.Clone(images))) != 1 {
		t.Errorf("broker images differ between variants: %q", images)
	}
}

func TestBrokerSidecar(t *testing.T) {
	t.Parallel()
	for _, dir := range variants {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			v := loadVariant(t, dir)
			tpl := v.Deployment.Spec.Template
			b := v.broker(t)

			if b.RestartPolicy != "Always" {
				t.Errorf("broker restartPolicy = %q, want Always (a native sidecar)", b.RestartPolicy)
			}
			if len(tpl.Spec.InitContainers) != 1 {
				t.Errorf("%d init containers, want only the broker", len(tpl.Spec.InitContainers))
			}
			if len(b.Args) > 0 && b.Args[0] != "serve" {
				t.Errorf("broker args = %q, want serve", b.Args)
			}
			for k, val := range v.Deployment.Spec.Selector.MatchLabels {
				if tpl.Metadata.Labels[k] != val {
					t.Errorf("selector %s=%s does not match the pod template labels %v", k, val, tpl.Metadata.Labels)
				}
			}

			env := envMap(b)
			checkListen(t, "BROKER_LISTEN", env["BROKER_LISTEN"].Value, "127.0.0.1", apiPort)
			checkListen(t, "BROKER_OPS_LISTEN", env["BROKER_OPS_LISTEN"].Value, "0.0.0.0", opsPort)
			if scopes := strings.Split(env["BROKER_PREFETCH_SCOPES"].Value, ","); !slices.Contains(scopes, logAnalytics) {
				t.Errorf("BROKER_PREFETCH_SCOPES = %q, want it to include %s", env["BROKER_PREFETCH_SCOPES"].Value, logAnalytics)
			}

			// The ops port is declared, named and probed.
			ports := map[string]int{}
			for _, p := range b.Ports {
				ports[p.Name] = p.ContainerPort
			}
			if diff := cmp.Diff(map[string]int{"ops": opsPort}, ports); diff != "" {
				t.Errorf("broker ports (-want +got):\n%s", diff)
			}
			for _, tc := range []struct {
				name string
				p    *probe
				path string
			}{
				{"startupProbe", b.StartupProbe, "/readyz"},
				{"readinessProbe", b.ReadinessProbe, "/readyz"},
				{"livenessProbe", b.LivenessProbe, "/healthz"},
			} {
				if tc.p == nil || tc.p.HTTPGet == nil {
					t.Errorf("broker %s: missing or not httpGet", tc.name)
					continue
				}
				if tc.p.HTTPGet.Path != tc.path {
					t.Errorf("broker %s path = %s, want %s", tc.name, tc.p.HTTPGet.Path, tc.path)
				}
				if got := resolvePort(tc.p.HTTPGet.Port, ports); got != opsPort {
					t.Errorf("broker %s port %v resolves to %d, want the ops port %d", tc.name, tc.p.HTTPGet.Port, got, opsPort)
				}
			}

			// The app finds the broker's App Service endpoint on loopback and
			// sends the header the broker expects.
			appEnv := envMap(v.app(t))
			_, port, _ := net.SplitHostPort(env["BROKER_LISTEN"].Value)
			wantEndpoint := (&url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", port), Path: msiPath}).String()
			if got := appEnv["IDENTITY_ENDPOINT"].Value; got != wantEndpoint {
				t.Errorf("app IDENTITY_ENDPOINT = %q, want %q", got, wantEndpoint)
			}
			brokerHeader, appHeader := secretRef(env["BROKER_IDENTITY_HEADER"]), secretRef(appEnv["IDENTITY_HEADER"])
			if brokerHeader == nil || appHeader == nil || *brokerHeader != *appHeader {
				t.Errorf("BROKER_IDENTITY_HEADER from %+v and app IDENTITY_HEADER from %+v, want the same Secret key", brokerHeader, appHeader)
			} else {
				checkSecretKey(t, v, *brokerHeader)
			}
		})
	}
}

// checkListen checks a host:port listen address.
func checkListen(t *testing.T, name, addr, wantHost string, wantPort int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != wantHost || port != strconv.Itoa(wantPort) {
		t.Errorf("%s = %q, want %s", name, addr, net.JoinHostPort(wantHost, strconv.Itoa(wantPort)))
	}
}

// resolvePort resolves a probe port (number or name) to a number, 0 when unknown.
func resolvePort(p any, named map[string]int) int {
	switch p := p.(type) {
	case int:
		return p
	case string:
		if n, err := strconv.Atoi(p); err == nil {
			return n
		}
		return named[p]
	}
	return 0
}

// envMap indexes a container's environment by name.
func envMap(c container) map[string]envVar {
	m := make(map[string]envVar, len(c.Env))
	for _, e := range c.Env {
		m[e.Name] = e
	}
	return m
}

// secretRef returns the Secret key an environment variable is read from, or nil.
func secretRef(e envVar) *keyRef {
	if e.ValueFrom == nil {
		return nil
	}
	return e.ValueFrom.SecretKeyRef
}

// checkSecretKey checks that the example Secret holds the referenced key.
func checkSecretKey(t *testing.T, v variant, ref keyRef) {
	t.Helper()
	if ref.Name != v.Secret.Metadata.Name {
		t.Errorf("reference to Secret %s, but the example Secret is %s", ref.Name, v.Secret.Metadata.Name)
		return
	}
	_, inData := v.Secret.Data[ref.Key]
	_, inString := v.Secret.StringData[ref.Key]
	if !inData && !inString {
		t.Errorf("Secret %s has no key %s", ref.Name, ref.Key)
	}
}

// runtimeEnv are the variables outside the broker's own that the broker
// container may set: the Go runtime's.
var runtimeEnv = []string{"GOMEMLIMIT", "GOMAXPROCS", "GODEBUG", "SSL_CERT_FILE", "SSL_CERT_DIR"}

func TestBrokerEnvNamesAccepted(t *testing.T) {
	t.Parallel()
	accepted := config.EnvNames()
	if len(accepted) == 0 {
		t.Fatal("config.EnvNames() is empty")
	}
	for _, dir := range variants {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			v := loadVariant(t, dir)
			seen := map[string]bool{}
			for _, e := range v.broker(t).Env {
				if seen[e.Name] {
					t.Errorf("broker env %s set twice", e.Name)
				}
				seen[e.Name] = true
				switch {
				case strings.HasPrefix(e.Name, "BROKER_") || strings.HasPrefix(e.Name, "AZURE_"):
					if !slices.Contains(accepted, e.Name) {
						t.Errorf("broker env %s is not one the binary reads (config.EnvNames() = %q)", e.Name, accepted)
					}
				case !slices.Contains(runtimeEnv, e.Name):
					t.Errorf("broker env %s is neither the broker's nor the Go runtime's", e.Name)
				}
			}
		})
	}
}

func TestCredentials(t *testing.T) {
	t.Parallel()
	credentialEnv := []string{"AZURE_CLIENT_SECRET", "AZURE_CLIENT_SECRET_FILE", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_CLIENT_CERTIFICATE_PATH"}
	tests := []struct {
		dir, credential string
	}{
		{filepath.Join("kubernetes"), "AZURE_CLIENT_SECRET_FILE"},
		{filepath.Join("kubernetes", "workload-identity"), "AZURE_FEDERATED_TOKEN_FILE"},
	}
	for _, tc := range tests {
		t.Run(tc.dir, func(t *testing.T) {
			t.Parallel()
			v := loadVariant(t, tc.dir)
			b := v.broker(t)
			env := envMap(b)
			var creds []string
			for _, name := range credentialEnv {
				if _, ok := env[name]; ok {
					creds = append(creds, name)
				}
			}
			if diff := cmp.Diff([]string{tc.credential}, creds); diff != "" {
				t.Fatalf("credential variables (-want +got):\n%s", diff)
			}
			for _, id := range []string{"AZURE_TENANT_ID", "AZURE_CLIENT_ID"} {
				if env[id].Value == "" {
					t.Errorf("broker env %s is not set", id)
				}
			}
			// The credential file lies in a read-only whole-directory mount,
			// so the kubelet can replace it and the broker re-reads it.
			file := env[tc.credential].Value
			dir, name := filepath.Split(file)
			var mount *volumeMount
			for i, m := range b.VolumeMounts {
				if filepath.Clean(m.MountPath) == filepath.Clean(dir) {
					mount = &b.VolumeMounts[i]
				}
			}
			if mount == nil {
				t.Fatalf("%s = %s is in no volume mount of the broker", tc.credential, file)
			}
			if mount.SubPath != "" || !mount.ReadOnly {
				t.Errorf("mount %s: subPath %q, readOnly %v; want no subPath (it would freeze the file) and readOnly", mount.MountPath, mount.SubPath, mount.ReadOnly)
			}
			var vol *volume
			for i, vv := range v.Deployment.Spec.Template.Spec.Volumes {
				if vv.Name == mount.Name {
					vol = &v.Deployment.Spec.Template.Spec.Volumes[i]
				}
			}
			if vol == nil {
				t.Fatalf("mount %s names volume %s, which the pod does not have", mount.MountPath, mount.Name)
			}
			for _, c := range v.Deployment.Spec.Template.Spec.Containers {
				for _, m := range c.VolumeMounts {
					if m.Name == vol.Name {
						t.Errorf("app container %s mounts the broker's credential volume %s", c.Name, vol.Name)
					}
				}
			}

			switch tc.credential {
			case "AZURE_CLIENT_SECRET_FILE":
				if vol.Secret == nil {
					t.Fatalf("volume %s is not a Secret volume", vol.Name)
				}
				key := name
				for _, it := range vol.Secret.Items {
					if it.Path == name {
						key = it.Key
					}
				}
				checkSecretKey(t, v, keyRef{Name: vol.Secret.SecretName, Key: key})
				if m := vol.Secret.DefaultMode; m == nil {
					t.Error("Secret volume has no defaultMode, want read-only and nothing for others (e.g. 0440)")
				} else if *m&0o227 != 0 {
					t.Errorf("Secret volume defaultMode = %#o, want read-only and nothing for others (e.g. 0440)", *m)
				}
			case "AZURE_FEDERATED_TOKEN_FILE":
				if vol.Projected == nil || len(vol.Projected.Sources) != 1 || vol.Projected.Sources[0].ServiceAccountToken == nil {
					t.Fatalf("volume %s is not a projected service account token", vol.Name)
				}
				sat := vol.Projected.Sources[0].ServiceAccountToken
				if sat.Path != name || sat.Audience != federatedAud {
					t.Errorf("projected token path %s audience %s, want %s and %s", sat.Path, sat.Audience, name, federatedAud)
				}
				tpl := v.Deployment.Spec.Template
				if tpl.Metadata.Labels["azure.workload.identity/use"] != "true" {
					t.Errorf("pod labels %v lack azure.workload.identity/use: \"true\"", tpl.Metadata.Labels)
				}
				if tpl.Spec.ServiceAccountName != v.ServiceAccount.Metadata.Name {
					t.Errorf("pod service account %s, want %s", tpl.Spec.ServiceAccountName, v.ServiceAccount.Metadata.Name)
				}
				if got := v.ServiceAccount.Metadata.Annotations["azure.workload.identity/client-id"]; got == "" || got != env["AZURE_CLIENT_ID"].Value {
					t.Errorf("service account client-id annotation %q, want AZURE_CLIENT_ID %q", got, env["AZURE_CLIENT_ID"].Value)
				}
				if skip := tpl.Metadata.Annotations["azure.workload.identity/skip-containers"]; !slices.Contains(strings.Split(skip, ";"), v.app(t).Name) {
					t.Errorf("skip-containers annotation %q does not keep the federated token from the app container", skip)
				}
			}
		})
	}
}

// placeholder is how the example Secret marks a value to fill in.
func isPlaceholder(s string) bool { return strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") }

func TestNoSecretsInManifests(t *testing.T) {
	t.Parallel()
	// Variables that hold a secret: never a literal value in a manifest.
	secretEnv := []string{"AZURE_CLIENT_SECRET", "BROKER_IDENTITY_HEADER", "IDENTITY_HEADER", "AZURE_CLIENT_CERTIFICATE_PASSWORD"}
	for _, dir := range variants {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			v := loadVariant(t, dir)
			if len(v.Secret.Data) > 0 {
				t.Errorf("example Secret has data %v; use stringData placeholders", v.Secret.Data)
			}
			if len(v.Secret.StringData) == 0 {
				t.Error("example Secret has no stringData")
			}
			for k, val := range v.Secret.StringData {
				if !isPlaceholder(val) {
					t.Errorf("example Secret key %s = %q, want a <placeholder>", k, val)
				}
			}
			spec := v.Deployment.Spec.Template.Spec
			for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
				for _, e := range c.Env {
					if slices.Contains(secretEnv, e.Name) && (e.Value != "" || secretRef(e) == nil) {
						t.Errorf("container %s env %s is not read from a Secret", c.Name, e.Name)
					}
				}
			}
		})
	}
}

func TestSecurityContext(t *testing.T) {
	t.Parallel()
	for _, dir := range variants {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			v := loadVariant(t, dir)
			spec := v.Deployment.Spec.Template.Spec
			pod := spec.SecurityContext
			if pod == nil {
				pod = &securityContext{}
			}
			if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
				t.Error("pod automountServiceAccountToken is not false")
			}
			for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
				sc := c.SecurityContext
				if sc == nil {
					t.Errorf("container %s has no securityContext", c.Name)
					continue
				}
				isTrue := func(b *bool) bool { return b != nil && *b }
				isFalse := func(b *bool) bool { return b != nil && !*b }
				if !isTrue(sc.ReadOnlyRootFilesystem) {
					t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
				}
				if !isTrue(sc.RunAsNonRoot) && !isTrue(pod.RunAsNonRoot) {
					t.Errorf("container %s: runAsNonRoot is not true", c.Name)
				}
				uid := pod.RunAsUser
				if sc.RunAsUser != nil {
					uid = sc.RunAsUser
				}
				if uid == nil || *uid != nonRootUID {
					t.Errorf("container %s: runAsUser = %v, want %d", c.Name, uid, nonRootUID)
				}
				if !isFalse(sc.AllowPrivilegeEscalation) {
					t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
				}
				if isTrue(sc.Privileged) {
					t.Errorf("container %s: privileged", c.Name)
				}
				if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) > 0 {
					t.Errorf("container %s: capabilities %+v, want drop [ALL] and nothing added", c.Name, sc.Capabilities)
				}
				seccomp := pod.SeccompProfile
				if sc.SeccompProfile != nil {
					seccomp = sc.SeccompProfile
				}
				if seccomp == nil || seccomp.Type != "RuntimeDefault" {
					t.Errorf("container %s: seccompProfile %+v, want RuntimeDefault", c.Name, seccomp)
				}
			}
		})
	}
}

// quantity parses the Kubernetes quantities the manifests use (plain, m, Ki,
// Mi, Gi) into milli-units or bytes.
func quantity(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		factor float64
	}{{"m", 1e-3}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"", 1}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, fmt.Errorf("quantity %q: %w", s, err)
			}
			return f * u.factor, nil
		}
	}
	return 0, fmt.Errorf("quantity %q: unknown unit", s)
}

func TestResources(t *testing.T) {
	t.Parallel()
	for _, dir := range variants {
		t.Run(dir, func(t *testing.T) {
			t.Parallel()
			v := loadVariant(t, dir)
			spec := v.Deployment.Spec.Template.Spec
			for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
				for _, res := range []string{"cpu", "memory"} {
					req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
					if req == "" || lim == "" {
						t.Errorf("container %s %s: request %q limit %q, want both", c.Name, res, req, lim)
						continue
					}
					r, err1 := quantity(req)
					l, err2 := quantity(lim)
					if err := errors.Join(err1, err2); err != nil {
						t.Errorf("container %s: %v", c.Name, err)
					} else if r > l {
						t.Errorf("container %s %s: request %s above limit %s", c.Name, res, req, lim)
					}
				}
			}
		})
	}
}

func TestQuantity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want float64
	}{{"10m", 0.01}, {"1", 1}, {"32Mi", 32 << 20}, {"1Gi", 1 << 30}, {"512Ki", 512 << 10}}
	for _, tc := range tests {
		if got, err := quantity(tc.in); err != nil || got != tc.want {
			t.Errorf("quantity(%q) = %v, %v, want %v", tc.in, got, err, tc.want)
		}
	}
	if _, err := quantity("1Zz"); err == nil {
		t.Error("quantity(1Zz) succeeded, want an error")
	}
}

func TestPodMonitor(t *testing.T) {
	t.Parallel()
	rules := readFile(t, filepath.Join("prometheus", "rules.yml"))
	var nodes []*yaml.Node
	for _, dir := range variants {
		v := loadVariant(t, dir)
		nodes = append(nodes, v.PodMonitorNode)
		pm := v.PodMonitor
		labels := v.Deployment.Spec.Template.Metadata.Labels
		if len(pm.Spec.Selector.MatchLabels) == 0 {
			t.Errorf("%s: PodMonitor selects every pod", dir)
		}
		for k, val := range pm.Spec.Selector.MatchLabels {
			if labels[k] != val {
				t.Errorf("%s: PodMonitor selector %s=%s does not match the pod labels %v", dir, k, val, labels)
			}
		}
		if len(pm.Spec.PodMetricsEndpoints) != 1 {
			t.Fatalf("%s: %d podMetricsEndpoints, want 1", dir, len(pm.Spec.PodMetricsEndpoints))
		}
		ep := pm.Spec.PodMetricsEndpoints[0]
		var opsName string
		for _, p := range v.broker(t).Ports {
			if p.ContainerPort == opsPort {
				opsName = p.Name
			}
		}
		if ep.Port != opsName || ep.Path != "/metrics" {
			t.Errorf("%s: PodMonitor scrapes port %q path %q, want the broker's ops port %q and /metrics", dir, ep.Port, ep.Path, opsName)
		}
		var job string
		for _, r := range ep.Relabelings {
			if r.TargetLabel == "job" && (r.Action == "" || r.Action == "replace") {
				job = r.Replacement
			}
		}
		if job == "" || !strings.Contains(rules, fmt.Sprintf(`job=%q`, job)) {
			t.Errorf("%s: PodMonitor sets job %q, which the alert rules do not select", dir, job)
		}
	}
	var first, second any
	if err := errors.Join(nodes[0].Decode(&first), nodes[1].Decode(&second)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("the variants' PodMonitors differ (-%s +%s):\n%s", variants[0], variants[1], diff)
	}
}

func TestVariantsShareTheSidecarShape(t *testing.T) {
	t.Parallel()
	// Everything but the credential should be the same in both variants.
	strip := func(c container) container {
		c.Env = slices.DeleteFunc(slices.Clone(c.Env), func(e envVar) bool {
			return strings.HasPrefix(e.Name, "AZURE_")
		})
		c.VolumeMounts = nil
		return c
	}
	a := strip(loadVariant(t, variants[0]).broker(t))
	b := strip(loadVariant(t, variants[1]).broker(t))
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("broker sidecars differ beyond the credential (-%s +%s):\n%s", variants[0], variants[1], diff)
	}
}
