package atomicfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		data    string
		mode    os.FileMode
		wantErr string
	}{
		{name: "new file in a new directory", path: filepath.Join(dir, "a", "b", "f"), data: "one", mode: 0o600},
		{name: "replaces, new mode", path: filepath.Join(dir, "a", "b", "f"), data: "two", mode: 0o644},
		{name: "directory in the way", path: filepath.Join(dir, "a", "b"), data: "x", mode: 0o644, wantErr: "failed to rename"},
		{name: "file in the way of the directory", path: filepath.Join(dir, "a", "b", "f", "g"), data: "x", mode: 0o644, wantErr: "failed to create directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(tt.path, []byte(tt.data), tt.mode)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			} else if got, _ := os.ReadFile(tt.path); string(got) != tt.data {
				t.Fatalf("contents %q, want %q", got, tt.data)
			} else if st, _ := os.Stat(tt.path); st.Mode().Perm() != tt.mode {
				t.Fatalf("mode %v, want %v", st.Mode().Perm(), tt.mode)
			}
			// Never a temp file left behind.
			entries, _ := os.ReadDir(filepath.Dir(tt.path))
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Errorf("temp file %s left behind", e.Name())
				}
			}
		})
	}
}
