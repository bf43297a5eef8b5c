package kindlab

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/keysync-dev/keysync/internal/names"
)

// nodeFiles holds the node image's own files; NodeImageFiles renders the shared ones.
const nodeFiles = "nodeimage/files"

// renderedFile returns one of the node image's rendered files.
func renderedFile(t *testing.T, rel string) []byte {
	t.Helper()
	files, err := NodeImageFiles("3.10.1")
	if err != nil {
		t.Fatal(err)
	}
	data, ok := files[rel]
	if !ok {
		t.Fatalf("NodeImageFiles renders no %s", rel)
	}
	return data
}

func readTOML(t *testing.T, rel string, v any) {
	t.Helper()
	if _, err := toml.Decode(string(renderedFile(t, rel)), v); err != nil {
		t.Fatalf("failed to parse %s: %v", rel, err)
	}
}

// TestNodeImageHasNoStaticCopies: a file under nodeimage/files that the build also renders
// would be a second copy to drift (the rendered one wins in the build context).
func TestNodeImageHasNoStaticCopies(t *testing.T) {
	files, err := NodeImageFiles("3.10.1")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("NodeImageFiles renders nothing")
	}
	for rel := range files {
		if _, err := os.Stat(filepath.Join(nodeFiles, filepath.FromSlash(rel))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("nodeimage/files/%s exists (%v): it is rendered from lab/labconfig, delete the copy", rel, err)
		}
	}
}

// TestNodeCRIOConfig checks the node image's CRI-O drop-in against what the lab relies on.
func TestNodeCRIOConfig(t *testing.T) {
	var cfg struct {
		Crio struct {
			API struct {
				Listen string `toml:"listen"`
			} `toml:"api"`
			Runtime struct {
				CgroupManager      string `toml:"cgroup_manager"`
				DecryptionKeysPath string `toml:"decryption_keys_path"`
				DefaultRuntime     string `toml:"default_runtime"`
				Runtimes           map[string]struct {
					RuntimePath string `toml:"runtime_path"`
				} `toml:"runtimes"`
			} `toml:"runtime"`
			Image struct {
				PauseImage      string `toml:"pause_image"`
				PauseCommand    string `toml:"pause_command"`
				SignaturePolicy string `toml:"signature_policy"`
			} `toml:"image"`
		} `toml:"crio"`
	}
	readTOML(t, "etc/crio/crio.conf.d/10-keysync.conf", &cfg)
	c := cfg.Crio
	tests := []struct{ name, got, want string }{
		{"listen", "unix://" + c.API.Listen, CRISocket},
		{"cgroup_manager (kind's kubelet uses systemd)", c.Runtime.CgroupManager, "systemd"},
		{"decryption_keys_path", c.Runtime.DecryptionKeysPath, names.KeysRoot},
		{"default runtime path", c.Runtime.Runtimes[c.Runtime.DefaultRuntime].RuntimePath, "/usr/local/bin/keysync-runtime-wrapper"},
		{"pause image (preloaded, the version given)", c.Image.PauseImage, "registry.k8s.io/pause:3.10.1"},
		{"pause command (image entrypoint)", c.Image.PauseCommand, ""},
		{"signature policy", c.Image.SignaturePolicy, "/etc/containers/policy.json"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestNodeRegistriesBlockOutside checks that no pull on a node can reach a public registry:
// short names do not resolve, the well-known registries are blocked, the lab registry is
// reachable (insecure) under its node name and its host-port alias, and the signature policy
// rejects everything else.
func TestNodeRegistriesBlockOutside(t *testing.T) {
	var reg struct {
		Unqualified []string `toml:"unqualified-search-registries"`
		Registry    []struct {
			Prefix   string `toml:"prefix"`
			Location string `toml:"location"`
			Insecure bool   `toml:"insecure"`
			Blocked  bool   `toml:"blocked"`
		} `toml:"registry"`
	}
	readTOML(t, "etc/containers/registries.conf", &reg)
	if len(reg.Unqualified) != 0 {
		t.Errorf("unqualified-search-registries = %v, want none", reg.Unqualified)
	}
	blocked := map[string]bool{}
	redirect := map[string]string{}
	for _, r := range reg.Registry {
		key := r.Prefix
		if key == "" {
			key = r.Location
		}
		if r.Blocked {
			blocked[key] = true
		}
		if r.Insecure {
			redirect[key] = r.Location
		}
	}
	for _, host := range []string{"registry.k8s.io", "k8s.gcr.io", "docker.io", "index.docker.io", "quay.io", "gcr.io", "ghcr.io", "icr.io", "de.icr.io"} {
		if !blocked[host] {
			t.Errorf("%s is not blocked", host)
		}
	}
	for _, prefix := range []string{RegistryNodeAddr, RegistryHostAddr, RegistryHostAlias} {
		if redirect[prefix] != RegistryNodeAddr {
			t.Errorf("%s → %q, want insecure %s", prefix, redirect[prefix], RegistryNodeAddr)
		}
	}

	data := renderedFile(t, "etc/containers/policy.json")
	var policy struct {
		Default    []map[string]any                       `json:"default"`
		Transports map[string]map[string][]map[string]any `json:"transports"`
	}
	if err := json.Unmarshal(data, &policy); err != nil {
		t.Fatalf("policy.json: %v", err)
	}
	if len(policy.Default) != 1 || policy.Default[0]["type"] != "reject" {
		t.Errorf("policy default = %v, want reject", policy.Default)
	}
	// CRI-O checks the policy when it creates a container too, so the preloaded control-plane
	// images' registry is accepted; registries.conf blocks pulls from it.
	for scope := range policy.Transports["docker"] {
		lab := strings.HasSuffix(scope, ":5000") || strings.HasSuffix(scope, ":5001")
		if !lab && !blocked[scope] {
			t.Errorf("policy accepts docker scope %q, neither the lab registry nor blocked", scope)
		}
	}
}
