package nodelab

import (
	"fmt"
	"net"
	"slices"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labca"
	"github.com/keysync-dev/keysync/lab/labconfig"
)

// capabilities are what the node lab can do: it blocks every outside registry, runs a mockkp
// whose admin API the runner reaches, its node access (CRI-O's socket on this host) runs
// containers, its kube-apiserver encrypts Secrets through keysync's KMS plug-in, its etcd
// serves plain HTTP on loopback, its registry requires credentials, its synchronizer reaches
// mockkp by IAM's and Key Protect's public names and its keys tree is a directory of this host
// (the runner plants files there).
func capabilities() []lab.Capability {
	return []lab.Capability{lab.CapIsolated, lab.CapMockKP, lab.CapRunImage, lab.CapKMS, lab.CapEtcd, lab.CapRegistryAuth, lab.CapKPPublicNames, lab.CapPlant}
}

// env is the lab's description; kill and restart are the disrupt commands ("" when the lab
// cannot name them: then it lacks those capabilities).
func (r *runner) env(kill, restart string) lab.Env {
	kp := "http://" + r.st.MockKP
	caps := capabilities()
	if r.opts.Synchronizer == SynchronizerNone {
		// Nothing maps the public names for a synchronizer the lab does not start: the Key
		// Protect features must not give it a keyprotect-config naming the real hosts.
		caps = slices.DeleteFunc(caps, func(c lab.Capability) bool { return c == lab.CapKPPublicNames })
	}
	if kill != "" && restart != "" {
		caps = append(caps, lab.CapKillSyncer, lab.CapRestartAPIServer)
	}
	return lab.Env{
		KillSyncerCmd: kill, RestartAPIServerCmd: restart,
		Lab: lab.KindNode, Synchronizer: synchronizerName(r.opts.Synchronizer), Capabilities: caps, NodeAccess: lab.AccessHost,
		Kubeconfig: r.l.Kubeconfig(), Nodes: []string{NodeName},
		CRIEndpoint: r.l.CRISocket(), KeysRoot: r.l.KeysRoot(), SyncSubdir: SyncSubdir, Registry: r.st.Registry,
		RegistryAuthFile: r.l.RegistryAuthFile(), RotateRegistryPasswordCmd: r.rotateCmd(),
		MockKPURL: kp, MockKPTokenURL: kp + "/identity/token", MockKPAdminURL: "http://" + r.st.MockKPAdmin,
		MockKPClusterURL: kp, MockKPClusterTokenURL: kp + "/identity/token",
		KPPublicURL: labconfig.KPPublicURL, KPCAFile: labca.FilesIn(r.l.LabCADir()).CA,
		KPInstanceID: KPInstanceID, KPAPIKey: KPAPIKey, KPRootKeyID: KPRootKeyID,
		FixturesManifest: r.l.FixturesManifest(), SyncerNamespace: Namespace,
		EtcdEndpoints: []string{"http://" + r.st.Etcd}, KMSRootKeyID: KPKMSRootKeyID, KMSHealthURL: "http://" + r.st.KMSHealth + "/readyz",
		Extra: map[string]string{"NODE_LAB_WORK_DIR": r.l.Dir, "NODE_LAB_LOGS": r.l.LogDir(),
			"CRICTL_CONFIG": r.l.CrictlConfig(), "PAUSE_IMAGE": r.pauseImage(), "SYNCER_LOG": r.l.Log("syncer"),
			// Where the public names must resolve, for a synchronizer run by hand (none).
			"KP_PUBLIC_ADDRESS": hostOf(r.st.MockKPTLS)},
	}
}

// writeEnv writes crictl's config and the env file.
func (r *runner) writeEnv(kill, restart string) (lab.Env, error) {
	crictl := fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", r.l.CRISocket(), r.l.CRISocket())
	if err := atomicfile.Write(r.l.CrictlConfig(), []byte(crictl), 0o644); err != nil {
		return lab.Env{}, fmt.Errorf("failed to write crictl config: %w", err)
	}
	env := r.env(kill, restart)
	if err := lab.WriteEnv(r.opts.EnvFile, env); err != nil {
		return lab.Env{}, err
	}
	return env, nil
}

// removeEnv removes the env file only when it describes this node lab: the kind lab writes
// the same default path.
func (r *runner) removeEnv(path string) (string, error) {
	return lab.RemoveEnvIf(path, func(env lab.Env) bool {
		return env.Lab == lab.KindNode && env.Extra["NODE_LAB_WORK_DIR"] == r.l.Dir
	})
}

// hostOf is addr's host ("" when addr is not host:port).
func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}
