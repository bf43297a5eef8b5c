package kindlab

import (
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/lab"
)

// TestNodeCommandsNameTheDisruptions: with the keysync CLI known, the env file gets the
// commands and capabilities add-node, kill-syncer and restart-apiserver, once each, and
// validates; without it, none.
func TestNodeCommandsNameTheDisruptions(t *testing.T) {
	l := &Lab{Opts: Options{Keysync: "/bin/keysync", Name: "ks", OutDir: "/out", EnvPath: "/out/lab.env"},
		Env: lab.Env{Lab: lab.KindKind, Kubeconfig: "/k", Nodes: []string{"a"}}}
	l.nodeCommands()
	l.nodeCommands()
	for cmd, verb := range map[string]string{l.Env.KillSyncerCmd: "lab disrupt kill-syncer --kind kind --name ks",
		l.Env.RestartAPIServerCmd: "lab disrupt restart-apiserver --kind kind --name ks"} {
		if !strings.HasPrefix(cmd, "/bin/keysync "+verb) {
			t.Errorf("command %q, want /bin/keysync %s ...", cmd, verb)
		}
	}
	want := []lab.Capability{lab.CapAddNode, lab.CapKillSyncer, lab.CapRestartAPIServer}
	if len(l.Env.Capabilities) != len(want) {
		t.Errorf("capabilities %v, want %v", l.Env.Capabilities, want)
	}
	for _, c := range want {
		if !l.Env.Has(c) {
			t.Errorf("capability %s missing", c)
		}
	}
	if err := l.Env.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	none := &Lab{Env: lab.Env{Lab: lab.KindKind}}
	none.nodeCommands()
	if none.Env.KillSyncerCmd != "" || none.Env.Has(lab.CapKillSyncer) {
		t.Errorf("without the CLI: %+v", none.Env)
	}
}
