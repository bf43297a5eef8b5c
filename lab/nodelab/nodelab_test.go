package nodelab

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	ok := Options{WorkDir: "/w", EnvFile: "/w/lab.env", BinDir: "/b", CRIOBinDir: "/c", K8sBinDir: "/k"}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr []string
	}{
		{name: "complete", mutate: func(*Options) {}},
		{name: "relative work dir", mutate: func(o *Options) { o.WorkDir = "_out/node-lab" }, wantErr: []string{`work dir "_out/node-lab" is not absolute`}},
		{name: "nothing set", mutate: func(o *Options) { *o = Options{} },
			wantErr: []string{"work dir is not set", "env file is not set", "CRI-O bin dir is not set", "Kubernetes bin dir is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mutate(&o)
			err := o.validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q", err, w)
				}
			}
		})
	}
}

func TestFollower(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lab.log")
	if err := os.WriteFile(path, []byte("• old run ...\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	f := &follower{path: path, out: &out}
	if err := f.skipToEnd(); err != nil {
		t.Fatal(err)
	}
	appendLog := func(s string) {
		t.Helper()
		fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.WriteString(s)
		fh.Close()
	}
	steps := []struct {
		write string
		want  string
	}{
		{write: "=== start\n• Starting CRI-O ...\ntime=x level=INFO msg=debug\n✓ Starting CRI-O (pid 1) 0.4", want: "• Starting CRI-O ...\n"},
		{write: "2s\n", want: "• Starting CRI-O ...\n✓ Starting CRI-O (pid 1) 0.42s\n"},
		{write: "✗ Pushing the fixtures 1.00s\nERROR: step failed: a\nsecond line of the error\n",
			want: "• Starting CRI-O ...\n✓ Starting CRI-O (pid 1) 0.42s\n✗ Pushing the fixtures 1.00s\nERROR: step failed: a\nsecond line of the error\n"},
	}
	for i, s := range steps {
		appendLog(s.write)
		f.copy()
		if out.String() != s.want {
			t.Fatalf("step %d: out = %q, want %q", i, out.String(), s.want)
		}
	}
}

func TestStatusAndDownOnAnEmptyWorkDir(t *testing.T) {
	dir := t.TempDir()
	opts := Options{WorkDir: dir, EnvFile: filepath.Join(dir, "lab.env"), Self: "/bin/true"}
	var out bytes.Buffer
	err := Status(context.Background(), opts, &out)
	if err == nil || !strings.Contains(err.Error(), "make node-lab-up") {
		t.Fatalf("status err = %v, want a hint to start the lab", err)
	}
	if !strings.Contains(out.String(), "supervisor       stopped") {
		t.Fatalf("status output:\n%s", out.String())
	}
	out.Reset()
	opts.Out = &out
	if err := Down(context.Background(), opts); err != nil {
		t.Fatalf("down on a lab that is not up: %v", err)
	}
	if !strings.Contains(out.String(), "✓ Stopping the lab supervisor (not running)") {
		t.Fatalf("down output:\n%s", out.String())
	}
	if err := Down(context.Background(), Options{WorkDir: "relative"}); err == nil {
		t.Fatal("down accepted a relative work dir")
	}
}
