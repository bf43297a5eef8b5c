package kmsplugin

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

const testAPIKey = "test-apikey-never-in-errors-0123"

// runbookFile is a kmsplugin-config.yaml as the runbook writes it.
func runbookFile(dir string) string {
	return `SERVER_CONFIG:
  UNIX_SOCKET_PATH: "` + filepath.Join(dir, "kms.sock") + `"
  TOKEN_URL: "https://iam.cloud.ibm.com/identity/token"
  API_KEY: "` + testAPIKey + `"
  HEALTHZ_PATH: "/healthz"
  HEALTHZ_PORT: 8081
  CACHE_TIMEOUT_IN_HOURS: 1
  MAX_RETRIES: 3
KP_CONFIG:
  CRK_ID: "crk-1"
  URL: "https://us-south.kms.cloud.ibm.com"
  INSTANCE_ID: "instance-1"
LOGGER:
  LOG_LEVEL: "info"
  LOG_ALL_VALUES: false
`
}

func writeFile(t testing.TB, dir, name, data string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadRunbookFile(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "kmsplugin-config.yaml", runbookFile(dir), 0o600)
	c, err := Load(nil, env(map[string]string{EnvConfigFile: path}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{SocketPath: filepath.Join(dir, "kms.sock"), TokenURL: "https://iam.cloud.ibm.com/identity/token", APIKey: testAPIKey,
		HealthzPath: "/healthz", HealthzPort: 8081, MaxRetries: 3, CRKID: "crk-1", KPURL: "https://us-south.kms.cloud.ibm.com",
		InstanceID: "instance-1", LogLevel: "info", KeyCheckInterval: DefaultKeyCheckInterval, HealthzHost: DefaultHealthzHost, ConfigFile: path}
	got := c
	got.Warnings = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", got, want)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "SERVER_CONFIG.CACHE_TIMEOUT_IN_HOURS") {
		t.Errorf("warnings %q: want one naming CACHE_TIMEOUT_IN_HOURS as ignored", c.Warnings)
	}
}

// TestLoadPrecedence: flag > env > file > default, per setting.
func TestLoadPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "kmsplugin-config.yaml", runbookFile(dir), 0o600)
	keyFile := writeFile(t, dir, "apikey", "from-file-flag\n", 0o600)
	other := writeFile(t, dir, "other.yaml", "KP_CONFIG:\n  CRK_ID: from-other-file\n", 0o600)
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(Config) string
	}{
		{"file over default", nil, nil, func(c Config) string { return c.CRKID + " " + c.LogLevel }},
		{"env over file", nil, map[string]string{"KEYSYNC_KMS_CRK_ID": "crk-env", "KEYSYNC_KMS_MAX_RETRIES": "0"}, func(c Config) string {
			return c.CRKID + " " + strconv.Itoa(c.MaxRetries)
		}},
		{"flag over env", []string{"--crk-id", "crk-flag", "--max-retries=5"}, map[string]string{"KEYSYNC_KMS_CRK_ID": "crk-env", "KEYSYNC_KMS_MAX_RETRIES": "0"}, func(c Config) string {
			return c.CRKID + " " + strconv.Itoa(c.MaxRetries)
		}},
		{"api key: env over file", nil, map[string]string{"KEYSYNC_KMS_API_KEY": "from-env"}, func(c Config) string { return c.APIKey }},
		{"api key: --api-key-file over env", []string{"--api-key-file", keyFile}, map[string]string{"KEYSYNC_KMS_API_KEY": "from-env"}, func(c Config) string { return c.APIKey }},
		{"--config over config_file", []string{"--config", other, "--kp-url", "https://x.kms.cloud.ibm.com", "--instance-id", "i",
			"--unix-socket-path", filepath.Join(dir, "s.sock")}, map[string]string{"KEYSYNC_KMS_API_KEY": "k"}, func(c Config) string { return c.CRKID + " " + c.HealthzPath }},
	}
	want := []string{"crk-1 info", "crk-env 0", "crk-flag 5", "from-env", "from-file-flag", "from-other-file /healthz"}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := map[string]string{EnvConfigFile: path}
			for k, v := range tc.env {
				e[k] = v
			}
			c, err := Load(tc.args, env(e))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := tc.check(c); got != want[i] {
				t.Errorf("got %q, want %q", got, want[i])
			}
		})
	}
}

// TestLoadErrors: each bad input is a clear error naming the field, never quoting the API key.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good := runbookFile(dir)
	caDir := t.TempDir()
	unreadable := filepath.Join(caDir, "missing-ca.pem")
	notPEM := writeFile(t, caDir, "not-pem.pem", "just text\n", 0o600)
	tests := []struct {
		name string
		file string
		args []string
		want string
	}{
		{"missing CRK_ID", strings.Replace(good, `  CRK_ID: "crk-1"`+"\n", "", 1), nil, "KP_CONFIG.CRK_ID is missing"},
		{"empty CRK_ID", strings.Replace(good, `"crk-1"`, `""`, 1), nil, "KP_CONFIG.CRK_ID is missing"},
		{"unknown field", strings.Replace(good, "  MAX_RETRIES: 3\n", "  MAX_RETRIES: 3\n  MAX_RETRYS: 4\n", 1), nil, "unknown fields: SERVER_CONFIG.MAX_RETRYS"},
		{"unknown section", good + "EXTRA:\n  A: 1\n", nil, "unknown fields: EXTRA"},
		{"a field in the wrong section", strings.Replace(good, "  LOG_ALL_VALUES: false\n", "  LOG_ALL_VALUES: false\n  CRK_ID: x\n", 1), nil, "unknown fields: LOGGER.CRK_ID"},
		{"http URL", strings.Replace(good, "https://us-south", "http://us-south", 1), nil, "KP_CONFIG.URL must use https"},
		{"http token URL", strings.Replace(good, "https://iam.cloud", "http://iam.cloud", 1), nil, "SERVER_CONFIG.TOKEN_URL must use https"},
		{"foreign token host", strings.Replace(good, "https://iam.cloud.ibm.com", "https://collector.example", 1), nil, "SERVER_CONFIG.TOKEN_URL host"},
		{"not a URL", strings.Replace(good, "https://us-south.kms.cloud.ibm.com", "ftp://x", 1), nil, "KP_CONFIG.URL must be an http(s) URL"},
		{"unreadable CA file", strings.Replace(good, "  INSTANCE_ID:", "  KP_CA_FILE: "+unreadable+"\n  INSTANCE_ID:", 1), nil, "KP_CONFIG.KP_CA_FILE: failed to read CA file"},
		{"token CA file without PEM", strings.Replace(good, "  API_KEY:", "  TOKEN_URL_CA_FILE: "+notPEM+"\n  API_KEY:", 1), nil, "holds no PEM certificate"},
		{"socket dir missing", strings.Replace(good, filepath.Join(dir, "kms.sock"), filepath.Join(dir, "no-such-dir", "kms.sock"), 1), nil, "UNIX_SOCKET_PATH " + filepath.Join(dir, "no-such-dir", "kms.sock") + ": its directory cannot be used"},
		{"port not a number", strings.Replace(good, "HEALTHZ_PORT: 8081", "HEALTHZ_PORT: eighty", 1), nil, "SERVER_CONFIG.HEALTHZ_PORT must be a whole number"},
		{"negative retries", strings.Replace(good, "MAX_RETRIES: 3", "MAX_RETRIES: -1", 1), nil, "SERVER_CONFIG.MAX_RETRIES must be a whole number of at least 0"},
		{"bad log level", strings.Replace(good, `LOG_LEVEL: "info"`, `LOG_LEVEL: "loud"`, 1), nil, "LOGGER.LOG_LEVEL"},
		{"a list value", strings.Replace(good, `CRK_ID: "crk-1"`, `CRK_ID: [a, b]`, 1), nil, "KP_CONFIG.CRK_ID must be a single value"},
		{"section not a mapping", "SERVER_CONFIG: 3\n", nil, "SERVER_CONFIG must be a mapping"},
		{"not YAML", "SERVER_CONFIG:\n  API_KEY: \"" + testAPIKey + "\n   - : [\n", nil, "not valid YAML"},
		{"unknown flag", good, []string{"--api-key", testAPIKey}, "flag provided but not defined"},
		{"flag with a bad value", good, []string{"--healthz-port", "x"}, "HEALTHZ_PORT must be a whole number"},
		{"health host not an IP", good, []string{"--healthz-host", "node.example"}, "--healthz-host must be an IP address"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "kmsplugin-config.yaml", tc.file, 0o600)
			_, err := Load(tc.args, env(map[string]string{EnvConfigFile: path}))
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want ErrInvalidConfig containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testAPIKey) {
				t.Errorf("error quotes the API key: %v", err)
			}
		})
	}
	t.Run("missing config file", func(t *testing.T) {
		_, err := Load(nil, env(map[string]string{EnvConfigFile: filepath.Join(dir, "nope.yaml")}))
		if err == nil || !strings.Contains(err.Error(), "failed to read config file") {
			t.Fatalf("Load = %v", err)
		}
	})
	t.Run("--healthz-host", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "c.yaml", good, 0o600)
		c, err := Load([]string{"--healthz-host", "0.0.0.0"}, env(map[string]string{EnvConfigFile: path}))
		if err != nil || c.HealthzHost != "0.0.0.0" {
			t.Fatalf("Load = %+v, %v, want HealthzHost 0.0.0.0", c.HealthzHost, err)
		}
		if c, err := Load(nil, env(map[string]string{EnvConfigFile: path})); err != nil || c.HealthzHost != DefaultHealthzHost {
			t.Fatalf("Load without the flag: HealthzHost %q, %v, want %s", c.HealthzHost, err, DefaultHealthzHost)
		}
	})
	t.Run("http URL with --allow-insecure-kp", func(t *testing.T) {
		path := writeFile(t, t.TempDir(), "c.yaml", strings.ReplaceAll(good, "https://", "http://"), 0o600)
		if _, err := Load([]string{"--allow-insecure-kp"}, env(map[string]string{EnvConfigFile: path})); err != nil {
			t.Fatalf("Load = %v, want the lab's http URLs accepted", err)
		}
	})
}

func TestLoadWarnings(t *testing.T) {
	dir := t.TempDir()
	file := strings.Replace(runbookFile(dir), "LOG_ALL_VALUES: false", "LOG_ALL_VALUES: true", 1)
	path := writeFile(t, dir, "kmsplugin-config.yaml", file, 0o644)
	c, err := Load(nil, env(map[string]string{EnvConfigFile: path}))
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(c.Warnings, "\n")
	for _, want := range []string{"CACHE_TIMEOUT_IN_HOURS", "LOG_ALL_VALUES is true", "readable by group or others"} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, testAPIKey) {
		t.Error("a warning quotes the API key")
	}
}

func TestUsageNamesEveryField(t *testing.T) {
	u := Usage()
	for _, f := range fields() {
		if !strings.Contains(u, f.key) {
			t.Errorf("usage lacks %s", f.key)
		}
	}
}
