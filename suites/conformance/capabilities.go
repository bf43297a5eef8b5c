package conformance

import (
	"slices"
	"strings"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// whoHas says, in a skip message, which lab has a capability (and how to get it elsewhere).
var whoHas = map[lab.Capability]string{
	lab.CapCluster:          "the kind lab (`make lab-up`) and any cluster (`make cluster-init`) have it",
	lab.CapIsolated:         "the node and kind labs have it; a real cluster may pull from outside",
	lab.CapAddNode:          "the kind lab has it; on any cluster give --hook-add-node (or $" + nodedriver.EnvHookAddNode + ")",
	lab.CapMockKP:           "the node and kind labs have it; on any cluster pass `keysync lab up --kind cluster --mockkp-from <lab env file>`",
	lab.CapRunImage:         "the node and kind labs and any cluster have it",
	lab.CapKMS:              "a lab whose kube-apiserver encrypts Secrets through keysync's KMS plug-in has it",
	lab.CapEtcd:             "a lab that exposes etcd to the runner has it",
	lab.CapRegistryAuth:     "a lab whose registry requires credentials has it",
	lab.CapKillSyncer:       "the node and kind labs have it (KILL_SYNCER_CMD); on any cluster (capability cluster) the synchronizer's DaemonSet pods are deleted with grace period 0 instead",
	lab.CapRestartAPIServer: "the node and kind labs have it (RESTART_APISERVER_CMD)",
	lab.CapPlant: "the node lab (NODE_ACCESS=host) and the kind lab (NODE_ACCESS=docker) have it; on any cluster the suites reach nodes " +
		"only through agent pods, which are read-only on the keys tree (least privilege), so nothing can be planted there",
}

// require skips t, naming the missing capability and which lab has it, unless the lab has
// every capability in caps. Features branch on capabilities only, never on the lab's name.
func (c *Context) require(t T, caps ...lab.Capability) {
	t.Helper()
	for _, capa := range caps {
		if !c.Lab.Has(capa) {
			c.skipWithout(t, capa)
		}
	}
}

// skipWithout skips t for want of capa.
func (c *Context) skipWithout(t T, capa lab.Capability) {
	t.Helper()
	t.Skipf("needs a lab with capability %s (%s); this lab (KEYSYNC_LAB=%s) has CAPABILITIES=%s",
		capa, whoHas[capa], c.Lab.Lab, capList(c.Lab.Capabilities))
}

func capList(cs []lab.Capability) string {
	if len(cs) == 0 {
		return "(none)"
	}
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return strings.Join(out, ",")
}

// withDefaultCapabilities fills in Capabilities for env files written before CAPABILITIES
// existed, from what each kind of lab could do then. It is the only place in the suites that
// looks at the lab's kind; a file that names its capabilities is taken as it is.
func withDefaultCapabilities(env lab.Env) lab.Env {
	if len(env.Capabilities) > 0 {
		return env
	}
	switch env.Lab {
	case lab.KindNode:
		env.Capabilities = []lab.Capability{lab.CapIsolated, lab.CapMockKP, lab.CapRunImage, lab.CapPlant}
	case lab.KindKind:
		// Without ADD_NODE_CMD an old kind lab cannot add nodes through the suites.
		env.Capabilities = []lab.Capability{lab.CapCluster, lab.CapIsolated, lab.CapMockKP, lab.CapRunImage, lab.CapPlant}
	default:
		env.Capabilities = []lab.Capability{lab.CapCluster, lab.CapRunImage}
		// Any cluster has a mockkp only when its env file describes one (--mockkp-from).
		if len(missingKP(env)) == 0 {
			env.Capabilities = append(env.Capabilities, lab.CapMockKP)
		}
	}
	if env.AddNodeCmd != "" && env.RemoveNodeCmd != "" && !slices.Contains(env.Capabilities, lab.CapAddNode) {
		env.Capabilities = append(env.Capabilities, lab.CapAddNode)
	}
	return env
}
