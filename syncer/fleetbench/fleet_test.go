package fleetbench

import (
	"strings"
	"testing"
)

func TestParseSecretWatches(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int
		wantErr string
	}{
		{"sums scopes", `# HELP apiserver_longrunning_requests x
apiserver_longrunning_requests{component="apiserver",group="",resource="secrets",scope="namespace",subresource="",verb="WATCH",version="v1"} 998
apiserver_longrunning_requests{component="apiserver",group="",resource="secrets",scope="cluster",subresource="",verb="WATCH",version="v1"} 2
apiserver_longrunning_requests{component="apiserver",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"} 7
apiserver_longrunning_requests{component="apiserver",group="",resource="secrets",scope="namespace",subresource="",verb="LIST",version="v1"} 5
`, 1000, ""},
		{"no sample", "apiserver_request_total 3\n", 0, "no apiserver_longrunning_requests"},
		{"bad value", `apiserver_longrunning_requests{resource="secrets",verb="WATCH"} many` + "\n", 0, "failed to parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseSecretWatches(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseSecretWatches = %d, %v; want an error with %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseSecretWatches = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
