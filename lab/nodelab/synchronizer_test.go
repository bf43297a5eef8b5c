package nodelab

import (
	"slices"
	"strings"
	"testing"
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
