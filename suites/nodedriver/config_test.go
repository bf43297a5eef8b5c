package nodedriver

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io/fs"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseListing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []Entry
		wantErr string
	}{
		{name: "empty", in: "", want: nil},
		{name: "entries", in: "directory 0755 0 synced\nfile 0600 227 synced/a b.pem\n\nsymlink 0777 0 synced/l\n",
			want: []Entry{
				{Path: "synced", Mode: 0o755, Type: TypeDir},
				{Path: "synced/a b.pem", Mode: 0o600, Size: 227, Type: TypeFile},
				{Path: "synced/l", Mode: 0o777, Type: TypeSymlink},
			}},
		{name: "unknown type", in: "fifo 0600 0 x\n", wantErr: "line 1: unknown entry type"},
		{name: "bad mode", in: "file 0900 1 x\n", wantErr: "not octal"},
		{name: "mode too big", in: "file 4755 1 x\n", wantErr: "not octal"},
		{name: "bad size", in: "file 0600 -1 x\n", wantErr: "not a byte count"},
		{name: "too few fields", in: "file 0600 1\n", wantErr: "got 3 fields"},
		{name: "escaping path", in: "file 0600 1 ../etc/shadow\n", wantErr: "inside the keys tree"},
		{name: "absolute path", in: "file 0600 1 /etc/shadow\n", wantErr: "must be relative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseListing([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			var buf bytes.Buffer
			if err := FormatListing(&buf, got); err != nil {
				t.Fatal(err)
			}
			again, err := ParseListing(buf.Bytes())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("round trip: %+v, %v", again, err)
			}
		})
	}
}

// stub is a base driver that records which path answered.
type stub struct{}

func (stub) Name() string                                    { return "stub" }
func (stub) Nodes(context.Context) ([]string, error)         { return []string{"base"}, nil }
func (stub) PullImage(context.Context, string, string) error { return errors.New("base pull") }
func (stub) RunImage(context.Context, string, string) (string, error) {
	return "base run", nil
}
func (stub) ListKeys(context.Context, string) ([]Entry, error) {
	return []Entry{{Path: "base", Type: TypeFile}}, nil
}
func (stub) ReadKey(context.Context, string, string) ([]byte, error) { return []byte("base"), nil }

func TestPrecedence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	funcNodes := func(context.Context) ([]string, error) { return []string{"func"}, nil }
	tests := []struct {
		name    string
		cfg     func(*Config)
		want    []string
		wantErr error
	}{
		{name: "func beats cmd and base", cfg: func(c *Config) {
			c.Base, c.NodesFunc, c.NodesCmd = stub{}, funcNodes, ParseCommand("echo cmd")
		}, want: []string{"func"}},
		{name: "cmd beats base", cfg: func(c *Config) {
			c.Base, c.NodesCmd = stub{}, ParseCommand("printf 'n1\\nn2\\n'")
		}, want: []string{"n1", "n2"}},
		{name: "base is the default", cfg: func(c *Config) { c.Base = stub{} }, want: []string{"base"}},
		{name: "nothing is unsupported", cfg: func(*Config) {}, wantErr: ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewConfig()
			c.Stderr = nil
			tc.cfg(&c)
			got, err := New(c).Nodes(ctx)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), "--hook-nodes") {
					t.Fatalf("err = %v, want %v naming the flag", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestCommandHooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewConfig()
	var stderr bytes.Buffer
	c.Stderr = &stderr
	c.CmdTimeout = 5 * time.Second
	// Each hook echoes its arguments so the test sees the contract's argv.
	// A hook line is one command followed by the arguments, so compound bodies are wrapped
	// in a shell function.
	c.PullImageCmd = ParseCommand(`f() { echo "pull $1 $2" >&2; [ "$2" = good ] || { echo "missing private key needed for decryption" >&2; exit 1; }; }; f`)
	c.RunImageCmd = ParseCommand(`exit 3`)
	c.ReadKeyCmd = ParseCommand(`f() { case "$2" in synced/k.pem) printf 'PEM';; *) echo "no $2" >&2; exit 4;; esac; }; f`)
	c.ListKeysCmd = ParseCommand(`f() { echo "file 0600 3 synced/k.pem"; }; f`)
	d := New(c)

	if err := d.PullImage(ctx, "n1", "good"); err != nil {
		t.Fatalf("pull good: %v", err)
	}
	err := d.PullImage(ctx, "n1", "bad")
	if err == nil || !strings.Contains(err.Error(), "missing private key needed for decryption") {
		t.Fatalf("pull bad: err = %v, want the runtime's message", err)
	}
	if !strings.Contains(stderr.String(), "pull n1 good") {
		t.Fatalf("stderr not passed through: %q", stderr.String())
	}
	if _, err := d.RunImage(ctx, "n1", "x"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("run: err = %v, want ErrUnsupported", err)
	}
	if b, err := d.ReadKey(ctx, "n1", "synced/./k.pem"); err != nil || string(b) != "PEM" {
		t.Fatalf("read: %q, %v", b, err)
	}
	if _, err := d.ReadKey(ctx, "n1", "synced/other"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read missing: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := d.ReadKey(ctx, "n1", "../x"); err == nil {
		t.Fatal("read ../x: want an error")
	}
	es, err := d.ListKeys(ctx, "n1")
	if err != nil || len(es) != 1 || es[0].Path != "synced/k.pem" || es[0].Mode != 0o600 {
		t.Fatalf("list: %+v, %v", es, err)
	}

	c.RunImageCmd = ParseCommand(`f() { echo "run $*"; }; f`)
	if out, err := RunImage(ctx, New(c), "n1", "img", "-once"); err != nil || out != "run n1 img -once\n" {
		t.Fatalf("run with args: %q, %v", out, err)
	}
	if _, err := RunImage(ctx, stub{}, "n1", "img", "-once"); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("args on a driver without ArgsRunner: %v, want ErrUnsupported", err)
	}

	c.RunImageCmd = ParseCommand(`f() { sleep 5; }; f`)
	c.CmdTimeout = 100 * time.Millisecond
	if _, err := New(c).RunImage(ctx, "n1", "x"); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow hook: err = %v, want a timeout", err)
	}
}

func TestHookSettingsPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{name: "unset", want: nil},
		{name: "env", env: map[string]string{EnvHookPullImage: "crictl pull"}, want: ParseCommand("crictl pull")},
		{name: "flag beats env", env: map[string]string{EnvHookPullImage: "crictl pull"},
			args: []string{"--hook-pull-image", "my-pull"}, want: ParseCommand("my-pull")},
		{name: "blank env is unset", env: map[string]string{EnvHookPullImage: "  "}, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := NewConfig()
			c.FromEnv(func(k string) string { return tc.env[k] })
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			c.RegisterFlags(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.PullImageCmd, tc.want) {
				t.Fatalf("PullImageCmd = %q, want %q", c.PullImageCmd, tc.want)
			}
		})
	}
}

// The contract's exit statuses and errors map onto each other.
func TestContractRoundTrip(t *testing.T) {
	tests := []struct {
		code   int
		wantOK bool
		is     error
	}{
		{ExitUnsupported, true, ErrUnsupported},
		{ExitNotFound, true, fs.ErrNotExist},
		{1, false, nil},
		{137, false, nil},
	}
	for _, tt := range tests {
		err, ok := ContractError(tt.code, "node n1", "why")
		if ok != tt.wantOK || (ok && !errors.Is(err, tt.is)) {
			t.Errorf("ContractError(%d) = %v, %v", tt.code, err, ok)
			continue
		}
		if ok && (ContractExitCode(err) != tt.code || err.Error() != "node n1: why: "+tt.is.Error()) {
			t.Errorf("exit %d: back to %d, message %q", tt.code, ContractExitCode(err), err)
		}
	}
	if ContractExitCode(nil) != 0 || ContractExitCode(errors.New("boom")) != 1 {
		t.Error("nil must be 0 and any other error 1")
	}
}
