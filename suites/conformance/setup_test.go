package conformance

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveLabEnv(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module github.com/keysync-dev/keysync\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(root, "suites", "e2e")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	given := filepath.Join(root, "given.env")
	fromEnv := filepath.Join(root, "env.env")
	def := filepath.Join(root, "_out", "lab.env")
	for _, p := range []string{given, fromEnv} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		flag, env string
		wd        string
		mkDefault bool
		want      string
		wantErr   string
	}{
		{name: "flag wins", flag: given, env: fromEnv, wd: sub, want: given},
		{name: "env next", env: fromEnv, wd: sub, want: fromEnv},
		{name: "default in checkout", wd: sub, mkDefault: true, want: def},
		{name: "missing default says how to start a lab", wd: sub, wantErr: "make node-lab-up"},
		{name: "missing flag file", flag: filepath.Join(root, "nope.env"), wd: sub, wantErr: "(--lab-env) does not exist"},
		{name: "outside the checkout", wd: t.TempDir(), wantErr: "not inside the keysync checkout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: the default file is created and removed.
			if tc.mkDefault {
				if err := os.MkdirAll(filepath.Dir(def), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(def, nil, 0o600); err != nil {
					t.Fatal(err)
				}
				defer os.Remove(def)
			}
			got, err := ResolveLabEnv(tc.flag, func(k string) string {
				if k == EnvLabEnv {
					return tc.env
				}
				return ""
			}, func() (string, error) { return tc.wd, nil })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrNoLab) {
					t.Fatalf("err = %v, want ErrNoLab containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
