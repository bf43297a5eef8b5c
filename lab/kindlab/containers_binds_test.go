package kindlab

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestCheckOwnBinds: a container mounting this lab's files passes; one mounting another
// checkout's (or lacking the mount) is foreign. docker is a stand-in printing the mounts.
func TestCheckOwnBinds(t *testing.T) {
	bin := t.TempDir()
	script := "#!/bin/sh\nprintf '/other/seed.json|/seed.json\\n/lab/ca|/tls\\n'\n"
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for _, tc := range []struct {
		binds   []string
		foreign bool
	}{
		{[]string{"/lab/ca:/tls:ro"}, false},
		{[]string{"/other/seed.json:/seed.json:ro", "/lab/ca:/tls"}, false},
		{[]string{"/mine/seed.json:/seed.json:ro", "/lab/ca:/tls:ro"}, true},
		{[]string{"/mine/auth:/auth:ro"}, true},
	} {
		err := checkOwnBinds(t.Context(), "c", tc.binds)
		if got := errors.Is(err, ErrForeignContainer); got != tc.foreign {
			t.Errorf("binds %v: %v, want foreign %v", tc.binds, err, tc.foreign)
		}
	}
}
