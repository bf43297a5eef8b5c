package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// The command line: flags, operations, usage errors. The operations' answers on a real tree,
// through every transport, are the contract test's (suites/nodedriver/contract).
func TestCommandLine(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "k.pem"), []byte("KEY"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := "unix://" + filepath.Join(t.TempDir(), "crio.sock")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantStderr string
	}{
		{name: "list-keys", args: []string{"--keys-root", root, "--cri", sock, "list-keys"}, wantOut: "file 0600 3 k.pem\n"},
		{name: "read-key", args: []string{"--keys-root", root, "--cri", sock, "read-key", "k.pem"}, wantOut: "KEY"},
		{name: "read-key of a missing file", args: []string{"--keys-root", root, "--cri", sock, "read-key", "x.pem"},
			wantCode: nodedriver.ExitNotFound, wantStderr: "read-key: failed to read key x.pem"},
		{name: "no operation", args: []string{"--keys-root", root}, wantCode: ExitUsage, wantStderr: "no operation"},
		{name: "unknown operation", args: []string{"--keys-root", root, "list"}, wantCode: nodedriver.ExitUnsupported, wantStderr: `unknown operation "list"`},
		{name: "missing argument", args: []string{"--keys-root", root, "read-key"}, wantCode: ExitUsage, wantStderr: "usage: read-key RELPATH"},
		{name: "extra argument", args: []string{"--keys-root", root, "audit", "x"}, wantCode: ExitUsage, wantStderr: "usage: audit"},
		{name: "relative keys root", args: []string{"--keys-root", "keys", "list-keys"}, wantCode: ExitUsage, wantStderr: "must be an absolute path"},
		{name: "tcp CRI endpoint", args: []string{"--cri", "tcp://x:1", "list-keys"}, wantCode: ExitUsage, wantStderr: "unix:// URL"},
		{name: "unknown flag", args: []string{"--keys", root, "list-keys"}, wantCode: ExitUsage, wantStderr: "flag provided but not defined"},
		{name: "help", args: []string{"-h"}, wantCode: 0, wantStderr: "usage: keysync-node-agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), tt.args, &out, &errb)
			if code != tt.wantCode || out.String() != tt.wantOut || !strings.Contains(errb.String(), tt.wantStderr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errb.String(), tt.wantCode, tt.wantOut, tt.wantStderr)
			}
		})
	}
}

func TestWaitEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if code := Main(ctx, []string{"wait"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatalf("wait: exit %d", code)
	}
}
