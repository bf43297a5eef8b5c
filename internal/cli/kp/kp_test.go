package kp_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/cli/kp"
	"github.com/keysync-dev/keysync/internal/kpkey"
)

func TestConnConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfgFile := write("config.json", `{"keyprotect-url":"http://cfg:1","instance-id":"cfg-inst","apikey":"cfg-key","token-url":"http://cfg:1/identity/token"}`)
	keyFile := write("apikey", " file-key \n")
	env := map[string]string{kp.EnvURL: "http://env:2", kp.EnvInstanceID: "env-inst", kp.EnvAPIKey: "env-key", kp.EnvTokenURL: "http://env:2/oidc/token"}
	tests := []struct {
		name    string
		conn    kp.Conn
		env     map[string]string
		want    kpkey.Config
		wantErr string
	}{
		{"config only", kp.Conn{ConfigFile: cfgFile}, nil,
			kpkey.Config{URL: "http://cfg:1", InstanceID: "cfg-inst", APIKey: "cfg-key", TokenURL: "http://cfg:1/identity/token"}, ""},
		{"env overrides config", kp.Conn{ConfigFile: cfgFile}, env,
			kpkey.Config{URL: "http://env:2", InstanceID: "env-inst", APIKey: "env-key", TokenURL: "http://env:2/oidc/token"}, ""},
		{"flags and file override env", kp.Conn{URL: "http://flag:3", InstanceID: "flag-inst", APIKeyFile: keyFile}, env,
			kpkey.Config{URL: "http://flag:3", InstanceID: "flag-inst", APIKey: "file-key", TokenURL: "http://env:2/oidc/token"}, ""},
		{"nothing", kp.Conn{}, nil, kpkey.Config{}, "keyprotect-url is missing"},
		{"bad url", kp.Conn{URL: "ftp://x", InstanceID: "i"}, map[string]string{kp.EnvAPIKey: "k"}, kpkey.Config{}, "must be an http(s) URL"},
		{"missing key file", kp.Conn{URL: "http://x", InstanceID: "i", APIKeyFile: filepath.Join(dir, "none")}, nil, kpkey.Config{}, "failed to read --apikey-file"},
		{"bad config json", kp.Conn{ConfigFile: write("bad.json", `{"apikey":"secret-value"`)}, nil, kpkey.Config{}, "failed to parse --config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.conn
			c.Getenv = func(k string) string { return tc.env[k] }
			got, err := c.Config()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "secret-value") {
					t.Fatalf("error quotes the config file")
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Config() = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
