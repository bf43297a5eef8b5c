package kindlab

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestScratchImageTag(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.WriteFile(bin, []byte("one"), 0o755); err != nil {
		t.Fatal(err)
	}
	base := func() ScratchImage {
		return ScratchImage{Repo: "keysync/x", Files: map[string]string{"/bin/x": bin}, Entrypoint: []string{"/bin/x"}}
	}
	tag0, err := base().Tag()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := base().Tag(); again != tag0 {
		t.Fatalf("tag not stable: %s vs %s", tag0, again)
	}
	if !strings.HasPrefix(tag0, "keysync/x:") {
		t.Fatalf("tag %q does not name the repo", tag0)
	}
	tests := []struct {
		name   string
		change func(*ScratchImage)
	}{
		{"entrypoint", func(s *ScratchImage) { s.Entrypoint = []string{"/bin/x", "-v"} }},
		{"destination", func(s *ScratchImage) { s.Files = map[string]string{"/bin/y": bin} }},
		{"data", func(s *ScratchImage) { s.Data = map[string][]byte{"/etc/c": []byte("c")} }},
		{"contents", func(s *ScratchImage) {
			if err := os.WriteFile(bin, []byte("two"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"mode", func(s *ScratchImage) {
			if err := os.Chmod(bin, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
	}
	seen := map[string]string{tag0: "base"}
	for _, tt := range tests {
		s := base()
		tt.change(&s)
		tag, err := s.Tag()
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if prev, dup := seen[tag]; dup {
			t.Errorf("changing %s kept the tag of %s: %s", tt.name, prev, tag)
		}
		seen[tag] = tt.name
	}
	if _, err := (ScratchImage{Repo: "r", Files: map[string]string{"/x": filepath.Join(dir, "missing")}}).Tag(); err == nil {
		t.Error("missing file: no error")
	}
	if _, err := (ScratchImage{}).Tag(); err == nil {
		t.Error("no repo: no error")
	}
}

// TestRegistryImage builds the lab registry image FROM scratch and checks that it serves the
// registry API (needs a Docker daemon: hack/prepare-docker.sh).
func TestRegistryImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tag, _, err := RegistryImage().Ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := "keysync-registry-test-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	docker(ctx, nil, "rm", "-f", name)
	if _, err := docker(ctx, nil, "run", "-d", "--name", name, "-p", "127.0.0.1::5000", tag); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { docker(context.Background(), nil, "rm", "-f", "-v", name) })
	port, err := docker(ctx, nil, "port", name, "5000/tcp")
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.Split(port, "\n")[0]
	if err := waitHTTP(ctx, "http://"+addr+"/v2/", 30*time.Second); err != nil {
		logs, _ := docker(ctx, nil, "logs", name)
		t.Fatalf("%v; logs: %s", err, logs)
	}
}
