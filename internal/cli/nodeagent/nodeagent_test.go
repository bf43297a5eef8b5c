package nodeagent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

func TestNodeAgent(t *testing.T) {
	root := t.TempDir()
	keys := filepath.Join(root, "keys")
	if err := os.MkdirAll(filepath.Join(keys, "synced"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keys, "synced", "a.pem"), []byte("KEY-A\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.pem", filepath.Join(keys, "synced", "link.pem")); err != nil {
		t.Fatal(err)
	}
	sock := "unix://" + filepath.Join(root, "nothing.sock")
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantCode int
		wantErr  string
	}{
		{name: "list-keys", args: []string{"list-keys"},
			wantOut: "directory 0700 0 synced\nfile 0600 6 synced/a.pem\nsymlink 0777 0 synced/link.pem\n"},
		{name: "read-key", args: []string{"read-key", "synced/a.pem"}, wantOut: "KEY-A\n"},
		{name: "read-key of a missing file: not found", args: []string{"read-key", "synced/b.pem"}, wantCode: nodedriver.ExitNotFound, wantErr: "not found"},
		{name: "read-key refuses a symlink", args: []string{"read-key", "synced/link.pem"}, wantCode: 1, wantErr: "synced/link.pem"},
		{name: "read-key refuses to leave the tree", args: []string{"read-key", "../keys/synced/a.pem"}, wantCode: 1, wantErr: "inside the keys tree"},
		{name: "pull-image without a runtime", args: []string{"pull-image", "example.test/x:1"}, wantCode: 1, wantErr: "example.test/x:1"},
		{name: "list-keys of a missing tree is empty", args: []string{"list-keys", "--keys-root", filepath.Join(root, "none")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			s := &cli.Streams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
			args := append([]string{"node-agent", "--keys-root", keys, "--cri", sock}, tt.args...)
			code := cli.Run(context.Background(), s, args, NewCommand)
			if code != tt.wantCode || out.String() != tt.wantOut || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d %q %q", code, out.String(), errOut.String(), tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}
