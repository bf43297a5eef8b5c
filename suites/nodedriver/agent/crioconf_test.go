package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCRIOKeysPath(t *testing.T) {
	tests := []struct {
		name       string
		files      map[string]string
		want       string
		wantSource string
		wantErr    string
	}{
		{name: "no configuration: CRI-O's default", want: DefaultDecryptionKeysPath},
		{name: "crio.conf without the key", files: map[string]string{"crio.conf": "[crio.runtime]\ncgroup_manager = \"cgroupfs\"\n"}, want: DefaultDecryptionKeysPath},
		{name: "crio.conf sets it", files: map[string]string{"crio.conf": "[crio.runtime]\ndecryption_keys_path = \"/etc/crio/keys\"\n"},
			want: "/etc/crio/keys", wantSource: "crio.conf"},
		{name: "a drop-in overrides crio.conf", files: map[string]string{
			"crio.conf":                "[crio.runtime]\ndecryption_keys_path = \"/etc/crio/keys\"\n",
			"crio.conf.d/10-keys.conf": "[crio.runtime]\ndecryption_keys_path = \"/var/lib/keys\"\n"},
			want: "/var/lib/keys", wantSource: "crio.conf.d/10-keys.conf"},
		{name: "the last drop-in in lexical order wins", files: map[string]string{
			"crio.conf.d/20-b.conf": "[crio.runtime]\ndecryption_keys_path = \"/b\"\n",
			"crio.conf.d/10-a.conf": "[crio.runtime]\ndecryption_keys_path = \"/a\"\n",
			"crio.conf.d/30-c.conf": "[crio.image]\npause_image = \"x\"\n"},
			want: "/b", wantSource: "crio.conf.d/20-b.conf"},
		{name: "the key in another table does not count", files: map[string]string{
			"crio.conf": "[crio.image]\ndecryption_keys_path = \"/elsewhere\"\n"}, want: DefaultDecryptionKeysPath},
		{name: "not TOML", files: map[string]string{"crio.conf.d/99-bad.conf": "[crio.runtime\n"}, wantErr: "failed to parse CRI-O config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, source, err := CRIOKeysPath(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantSource := ""
			if tt.wantSource != "" {
				wantSource = filepath.Join(dir, tt.wantSource)
			}
			if got != tt.want || source != wantSource {
				t.Errorf("CRIOKeysPath = %q from %q, want %q from %q", got, source, tt.want, wantSource)
			}
		})
	}
}
