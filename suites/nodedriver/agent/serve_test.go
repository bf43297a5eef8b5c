package agent

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"reflect"
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

func TestReadAuthStdin(t *testing.T) {
	t.Parallel()
	doc := `{"auths":{"reg.test:5000":{"auth":"aWFtYXBpa2V5OnB3"}}}`
	tests := []struct {
		name     string
		args     []string
		stdin    io.Reader
		wantArgs []string
		wantAuth string // "user:password" for reg.test:5000/x, "" none
		wantErr  string
	}{
		{"no flag", []string{"pull", "reg.test:5000/x"}, nil, []string{"pull", "reg.test:5000/x"}, "", ""},
		{"pull with auth", []string{"pull", "--auth-stdin", "reg.test:5000/x"}, strings.NewReader(doc), []string{"pull", "reg.test:5000/x"}, "iamapikey:pw", ""},
		{"run with auth and args", []string{"run", "--auth-stdin", "reg.test:5000/x", "a"}, strings.NewReader(doc), []string{"run", "reg.test:5000/x", "a"}, "iamapikey:pw", ""},
		{"flag on another op", []string{"audit", "--auth-stdin"}, nil, []string{"audit", "--auth-stdin"}, "", ""},
		{"no stdin", []string{"pull", "--auth-stdin", "r"}, nil, nil, "", "no stdin"},
		{"empty stdin", []string{"pull", "--auth-stdin", "r"}, strings.NewReader(""), nil, "", "empty"},
		{"not json", []string{"pull", "--auth-stdin", "r"}, strings.NewReader("iamapikey:pw"), nil, "", "containers-auth.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, args, err := readAuthStdin(context.Background(), tt.args, tt.stdin)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "pw") {
					t.Fatalf("error quotes the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(args, tt.wantArgs) {
				t.Fatalf("args %q, want %q", args, tt.wantArgs)
			}
			got := ""
			if a := authFor(ctx, "reg.test:5000/x:1"); a != nil {
				got = a.Username + ":" + a.Password
			}
			if got != tt.wantAuth {
				t.Fatalf("auth %q, want %q", got, tt.wantAuth)
			}
			if a := authFor(ctx, "other.test/x"); a != nil {
				t.Fatal("credentials sent to another registry")
			}
		})
	}
}
