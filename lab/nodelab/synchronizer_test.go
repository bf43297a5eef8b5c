package nodelab

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/lab"
)

func TestExpandSynchronizer(t *testing.T) {
	values := map[string]string{"{kubeconfig}": "/w/kubeconfig", "{keys-dir}": "/w/keys/synced", "{staging-dir}": "/w/keys-staging",
		"{namespace}": "image-key-synchronizer", "{node-name}": "node-lab"}
	for _, tc := range []struct {
		name, cmdline string
		want          []string
		err           string
	}{
		{name: "every placeholder", cmdline: "my-sync --kubeconfig {kubeconfig} --dir={keys-dir} --tmp {staging-dir} -n {namespace} --node {node-name}",
			want: []string{"my-sync", "--kubeconfig", "/w/kubeconfig", "--dir=/w/keys/synced", "--tmp", "/w/keys-staging", "-n", "image-key-synchronizer", "--node", "node-lab"}},
		{name: "extra spaces", cmdline: "  my-sync   {namespace} ", want: []string{"my-sync", "image-key-synchronizer"}},
		{name: "no placeholders", cmdline: "/opt/sync/run", want: []string{"/opt/sync/run"}},
		{name: "unknown placeholder", cmdline: "my-sync --x {keysdir}", err: "unknown placeholder {keysdir}"},
		{name: "empty", cmdline: "   ", err: "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ExpandSynchronizer(tc.cmdline, values)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ExpandSynchronizer(%q) error = %v, want one containing %q", tc.cmdline, err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ExpandSynchronizer(%q) = %q, %v; want %q", tc.cmdline, got, err, tc.want)
			}
		})
	}
}

func TestSynchronizerName(t *testing.T) {
	for in, want := range map[string]string{"": ReferenceSynchronizer, "none": "none", "my-sync {keys-dir}": "my-sync {keys-dir}"} {
		if got := synchronizerName(in); got != want {
			t.Errorf("synchronizerName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStatusOfOtherSynchronizers: "none" lists no synchronizer; a foreign one is up while its
// process runs (no health check, no address of the reference's probe).
func TestStatusOfOtherSynchronizers(t *testing.T) {
	for _, tc := range []struct {
		name, synchronizer string
		run                bool
		want               string // "" when the syncer is not listed
	}{
		{name: "none", synchronizer: SynchronizerNone, run: true},
		{name: "foreign, running", synchronizer: "my-sync {keys-dir}", run: true, want: "up"},
		{name: "foreign, stopped", synchronizer: "my-sync {keys-dir}", want: "not running"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			writeState(t, work, state{SyncerProbe: "127.0.0.1:1", Synchronizer: tc.synchronizer})
			if tc.run {
				startFake(t, work, "syncer")
			}
			nl, err := New(Options{WorkDir: work})
			if err != nil {
				t.Fatal(err)
			}
			st, err := nl.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var got *lab.Component
			for i, c := range st.Components {
				if c.Name == "syncer" {
					got = &st.Components[i]
				}
			}
			switch {
			case tc.want == "" && got != nil:
				t.Fatalf("syncer listed: %+v", *got)
			case tc.want == "up" && (got == nil || !got.Up || strings.Contains(got.Detail, "127.0.0.1:1")):
				t.Fatalf("syncer = %+v, want up without the reference's probe address", got)
			case tc.want == "not running" && (got == nil || got.Up || got.Detail != "not running"):
				t.Fatalf("syncer = %+v, want not running", got)
			}
		})
	}
}
