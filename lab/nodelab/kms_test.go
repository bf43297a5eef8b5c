package nodelab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/keysync-dev/keysync/internal/kmsplugin"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// TestKMSPluginConfig: the rendered kmsplugin-config.yaml is what the plug-in accepts (with the
// lab's --allow-insecure-kp), with the lab's root key, mockkp and health port.
func TestKMSPluginConfig(t *testing.T) {
	l := Layout{Dir: t.TempDir()}
	if err := os.MkdirAll(l.RunDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kmsplugin-config.yaml")
	if err := os.WriteFile(path, []byte(kmsPluginConfig(l.KMSSocket(), "127.0.0.1:8300", 8123)), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == kmsplugin.EnvConfigFile {
			return path
		}
		return ""
	}
	c, err := kmsplugin.Load([]string{"--allow-insecure-kp"}, getenv)
	if err != nil {
		t.Fatalf("the plug-in refuses the lab's config: %v", err)
	}
	if c.CRKID != KPKMSRootKeyID || c.KPURL != "http://127.0.0.1:8300" || c.TokenURL != "http://127.0.0.1:8300/identity/token" ||
		c.APIKey != KPAPIKey || c.InstanceID != KPInstanceID || c.HealthzPort != 8123 || c.SocketPath != l.KMSSocket() || len(c.Warnings) != 0 {
		t.Errorf("config %+v", c)
	}
	if _, err := kmsplugin.Load(nil, getenv); err == nil {
		t.Error("the lab's http config was accepted without --allow-insecure-kp")
	}
}

// TestEncryptionConfig: secrets go through the plug-in first (KMS v2), then identity.
func TestEncryptionConfig(t *testing.T) {
	var cfg struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Resources  []struct {
			Resources []string         `json:"resources"`
			Providers []map[string]any `json:"providers"`
		} `json:"resources"`
	}
	if err := yaml.UnmarshalStrict([]byte(encryptionConfig("/w/run/kms.sock")), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Kind != "EncryptionConfiguration" || cfg.APIVersion != "apiserver.config.k8s.io/v1" || len(cfg.Resources) != 1 {
		t.Fatalf("config %+v", cfg)
	}
	r := cfg.Resources[0]
	if strings.Join(r.Resources, ",") != "secrets" || len(r.Providers) != 2 {
		t.Fatalf("resources %+v", r)
	}
	kms, ok := r.Providers[0]["kms"].(map[string]any)
	if !ok || kms["apiVersion"] != "v2" || kms["name"] != labconfig.KMSProviderName || kms["endpoint"] != "unix:///w/run/kms.sock" || kms["timeout"] != "3s" {
		t.Errorf("first provider %+v, want the plug-in over KMS v2", r.Providers[0])
	}
	if _, ok := r.Providers[1]["identity"]; !ok {
		t.Errorf("second provider %+v, want identity", r.Providers[1])
	}
}
