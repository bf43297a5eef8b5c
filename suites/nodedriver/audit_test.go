package nodedriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

var sumA = strings.Repeat("ab", 32)

func TestParseAudit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []AuditEntry
		wantErr string
	}{
		{name: "empty", in: ""},
		{name: "every type", in: "directory 0700 0 - ok synced\nfile 0600 227 " + sumA + " ok synced/a b.pem\n\n" +
			"symlink 0777 0 - symlink synced/l\nother 0644 0 - not-regular synced/fifo\nfile 0600 0 " + sumA + " empty synced/e\n",
			want: []AuditEntry{
				{Entry: Entry{Path: "synced", Mode: 0o700, Type: TypeDir}, Verdict: VerdictOK},
				{Entry: Entry{Path: "synced/a b.pem", Mode: 0o600, Size: 227, Type: TypeFile}, SHA256: sumA, Verdict: VerdictOK},
				{Entry: Entry{Path: "synced/l", Mode: 0o777, Type: TypeSymlink}, Verdict: VerdictSymlink},
				{Entry: Entry{Path: "synced/fifo", Mode: 0o644, Type: TypeOther}, Verdict: VerdictNotRegular},
				{Entry: Entry{Path: "synced/e", Mode: 0o600, Type: TypeFile}, SHA256: sumA, Verdict: VerdictEmpty},
			}},
		{name: "too few fields", in: "file 0600 1 " + sumA + " ok\n", wantErr: "line 1: want"},
		{name: "unknown verdict", in: "file 0600 1 " + sumA + " fine x\n", wantErr: "unknown verdict"},
		{name: "a file without digest", in: "file 0600 1 - ok x\n", wantErr: "not 64 lowercase hex"},
		{name: "an uppercase digest", in: "file 0600 1 " + strings.ToUpper(sumA) + " ok x\n", wantErr: "not 64 lowercase hex"},
		{name: "a short digest", in: "file 0600 1 abcd ok x\n", wantErr: "not 64 lowercase hex"},
		{name: "a file that is a symlink", in: "file 0600 1 " + sumA + " symlink x\n", wantErr: "a file cannot be symlink"},
		{name: "empty but not size 0", in: "file 0600 1 " + sumA + " empty x\n", wantErr: "does not fit size 1"},
		{name: "size 0 but ok", in: "file 0600 0 " + sumA + " ok x\n", wantErr: "does not fit size 0"},
		{name: "a directory with a digest", in: "directory 0700 0 " + sumA + " ok x\n", wantErr: "has no digest"},
		{name: "a symlink judged ok", in: "symlink 0777 0 - ok x\n", wantErr: "is symlink, got ok"},
		{name: "a directory with a size", in: "directory 0700 4096 - ok x\n", wantErr: "has size 0"},
		{name: "bad mode", in: "file 0900 1 " + sumA + " ok x\n", wantErr: "not octal"},
		{name: "escaping path", in: "file 0600 1 " + sumA + " ok ../x\n", wantErr: "inside the keys tree"},
		{name: "second line", in: "directory 0700 0 - ok a\nfile\n", wantErr: "line 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseAudit([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			var buf bytes.Buffer
			if err := FormatAudit(&buf, got); err != nil {
				t.Fatal(err)
			}
			again, err := ParseAudit(buf.Bytes())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip: %+v, %v", again, err)
			}
		})
	}
}

// A verdict's reason is internal/crikeys' message; every verdict Judge gives parses back.
func TestJudge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e    Entry
		data string
		want Verdict
		why  string
	}{
		{Entry{Path: "d", Type: TypeDir}, "", VerdictOK, ""},
		{Entry{Path: "l", Type: TypeSymlink, Mode: 0o777}, "", VerdictSymlink, "symbolic links not supported"},
		{Entry{Path: "p", Type: TypeOther}, "", VerdictNotRegular, "not a regular file"},
		{Entry{Path: "e", Type: TypeFile}, "", VerdictEmpty, "key data is empty"},
		{Entry{Path: "t", Type: TypeFile}, "not a key\n", VerdictUnknownType, "Unknown decryption key type"},
	}
	for _, tt := range tests {
		got := Judge(tt.e, []byte(tt.data))
		if got.Verdict != tt.want || (tt.why == "") != (got.Verdict.Err() == nil) ||
			(tt.why != "" && !strings.Contains(got.Verdict.Err().Error(), tt.why)) {
			t.Errorf("%s: %s (%v), want %s (%q)", tt.e.Path, got.Verdict, got.Verdict.Err(), tt.want, tt.why)
		}
		var buf bytes.Buffer
		if err := FormatAudit(&buf, []AuditEntry{got}); err != nil {
			t.Fatal(err)
		}
		if _, err := ParseAudit(buf.Bytes()); err != nil {
			t.Errorf("%s: %q does not parse: %v", tt.e.Path, buf.String(), err)
		}
	}
}

// auditStub is a base driver that audits on the node.
type auditStub struct{ stub }

func (auditStub) AuditKeys(context.Context, string) ([]AuditEntry, error) {
	return []AuditEntry{{Entry: Entry{Path: "on-node", Type: TypeDir}, Verdict: VerdictOK}}, nil
}

// Audit's precedence: func > command > (list/read hooks: judged from them) > base's Auditor >
// judged from the base's list and read.
func TestAuditPrecedence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		cfg     func(*Config)
		want    string // the first entry's path
		wantErr error
	}{
		{name: "func", cfg: func(c *Config) {
			c.Base, c.AuditKeysCmd = auditStub{}, ParseCommand("exit 1")
			c.AuditKeysFunc = func(context.Context, string) ([]AuditEntry, error) {
				return []AuditEntry{{Entry: Entry{Path: "func", Type: TypeDir}, Verdict: VerdictOK}}, nil
			}
		}, want: "func"},
		{name: "command", cfg: func(c *Config) {
			c.Base, c.AuditKeysCmd = auditStub{}, ParseCommand(`f() { echo "directory 0700 0 - ok cmd-$1"; }; f`)
		}, want: "cmd-n1"},
		{name: "a list-keys hook: judged from the hooks", cfg: func(c *Config) {
			c.Base, c.ListKeysCmd = auditStub{}, ParseCommand(`f() { echo "directory 0700 0 hooked"; }; f`)
		}, want: "hooked"},
		{name: "the base's audit", cfg: func(c *Config) { c.Base = auditStub{} }, want: "on-node"},
		{name: "a base without audit: judged from its list and read", cfg: func(c *Config) { c.Base = stub{} }, want: "base"},
		{name: "nothing", cfg: func(*Config) {}, wantErr: ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewConfig()
			c.Stderr = nil
			tc.cfg(&c)
			got, err := AuditKeys(ctx, New(c).(KeyReader), "n1")
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || len(got) == 0 || got[0].Path != tc.want {
				t.Fatalf("got %+v, %v; want %s first", got, err, tc.want)
			}
		})
	}
}

// Agent.Call maps the transport's outcome onto the contract.
func TestAgentCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		code     int
		err      error
		wantIs   error
		wantText string
	}{
		{name: "success", code: 0},
		{name: "unsupported", code: ExitUnsupported, wantIs: ErrUnsupported, wantText: "node n1: agent read-key: why"},
		{name: "not found", code: ExitNotFound, wantIs: fs.ErrNotExist, wantText: "why"},
		{name: "another status", code: 137, wantText: "node n1: node agent read-key exited 137: why"},
		{name: "the transport failed", err: errors.New("connection reset"), wantText: "failed to run node agent read-key: connection reset: why"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := &Agent{Transport: TransportFunc(func(_ context.Context, node string, args []string, stdout, stderr io.Writer) (int, error) {
				fmt.Fprint(stdout, strings.Join(append([]string{node}, args...), " "))
				fmt.Fprint(stderr, "why\n")
				return tt.code, tt.err
			})}
			out, err := a.Call(context.Background(), "n1", OpReadKey, "synced/a.pem")
			if string(out) != "n1 read-key synced/a.pem" {
				t.Errorf("stdout %q", out)
			}
			if tt.code == 0 && tt.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("err = %v, want %q", err, tt.wantText)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("err %v is not %v", err, tt.wantIs)
			}
			if tt.wantIs == nil && (errors.Is(err, ErrUnsupported) || errors.Is(err, fs.ErrNotExist)) {
				t.Errorf("err %v maps to a contract error", err)
			}
		})
	}
}
