package kindlab

import (
	"strings"
	"testing"
)

func TestRolledOut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, status string
		nodes        int
		done         bool
		state        string
	}{
		{name: "rolled out on both nodes", status: "addon|3|3|2|2|2|2\n", nodes: 2, done: true, state: "addon 2/2"},
		{name: "a new spec not observed yet: the old pods are ready", status: "addon|4|3|2|2|2|2\n", nodes: 2,
			state: "addon 2/2 (2/2 updated, generation 3/4 observed)"},
		{name: "rolling: one pod of the new spec", status: "addon|4|4|2|1|2|2\n", nodes: 2,
			state: "addon 2/2 (1/2 updated, generation 4/4 observed)"},
		{name: "updated but not available yet", status: "addon|4|4|2|2|2|1\n", nodes: 2, state: "addon 2/2"},
		{name: "status not written yet", status: "addon|1|||||\n", nodes: 2, state: "addon 0/0"},
		{name: "one node short", status: "addon|1|1|1|1|1|1\n", nodes: 2, state: "addon 1/1"},
		{name: "two DaemonSets, both rolled out, one on every node", status: "addon|1|1|2|2|2|2\nhelper|2|2|1|1|1|1\n", nodes: 2, done: true,
			state: "addon 2/2, helper 1/1"},
		{name: "two DaemonSets, the second still rolling", status: "addon|1|1|2|2|2|2\nhelper|2|2|1|0|1|1\n", nodes: 2,
			state: "helper 1/1 (0/1 updated"},
		{name: "none", status: "", nodes: 2, state: "no DaemonSet in " + SyncerNamespace},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			done, state := rolledOut(tt.status, tt.nodes)
			if done != tt.done || !strings.Contains(state, tt.state) {
				t.Errorf("rolledOut = %v, %q; want %v, containing %q", done, state, tt.done, tt.state)
			}
		})
	}
}
