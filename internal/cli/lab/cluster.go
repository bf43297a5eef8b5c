package lab

import (
	"cmp"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/clusterlab"
)

// clusterFlags are --kind cluster's settings.
type clusterFlags struct {
	kubeconfig, registry, creds, authFile, certDir string
	nodeRegistry, caFile                           string
	fixturesManifest, marker, agentBinary          string
	syncerNamespace, syncSubdir, keysRoot, criSock string
	mockkpFrom, addNodeCmd, removeNodeCmd          string
	tlsVerify                                      bool
}

var clusterFlagNames = []string{"kubeconfig", "registry", "node-registry", "ca-file", "tls-verify", "creds", "authfile", "cert-dir", "fixtures-manifest",
	"marker", "agent-binary", "syncer-namespace", "sync-subdir", "keys-root", "cri-socket", "mockkp-from", "add-node-cmd", "remove-node-cmd"}

func (c *clusterFlags) bind(pf *pflag.FlagSet) {
	pf.StringVar(&c.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "cluster: admin kubeconfig of the cluster")
	pf.StringVar(&c.registry, "registry", "", "cluster: host[:port][/prefix] of a registry every node pulls from; images go under the prefix (required)")
	pf.StringVar(&c.nodeRegistry, "node-registry", "", "cluster: host[:port] under which the nodes reach --registry when it differs from the address this host pushes to")
	pf.StringVar(&c.caFile, "ca-file", "", "cluster: the registry's CA certificate (PEM)")
	pf.BoolVar(&c.tlsVerify, "tls-verify", true, "cluster: verify the registry's TLS certificate (false also allows plain HTTP)")
	pf.StringVar(&c.creds, "creds", "", "cluster: registry credentials user:password; written to a containers-auth.json (mode 0600) that every later push and pull reads")
	pf.StringVar(&c.authFile, "authfile", "", "cluster: containers-auth.json for the registry (an entry for --registry's host required); copied with mode 0600 for later steps")
	pf.StringVar(&c.certDir, "cert-dir", "", "cluster: directory with the registry's CA (ca.crt) and client certificates")
	pf.StringVar(&c.fixturesManifest, "fixtures-manifest", "", "cluster: use fixtures pushed before (their manifest.json) instead of pushing new ones")
	pf.StringVar(&c.marker, "marker", "", "cluster: prebuilt fixture marker program (default: build it from the keysync checkout)")
	pf.StringVar(&c.agentBinary, "agent-binary", "", "cluster: static linux/amd64 keysync-node-agent for the node agent image (default: beside this keysync, else built from the checkout)")
	pf.StringVar(&c.syncerNamespace, "syncer-namespace", names.Namespace, "cluster: namespace the synchronizer watches")
	pf.StringVar(&c.syncSubdir, "sync-subdir", names.SyncSubdir, "cluster: the synchronizer's directory under the keys tree")
	pf.StringVar(&c.keysRoot, "keys-root", names.KeysRoot, "cluster: CRI-O's decryption_keys_path on the nodes")
	pf.StringVar(&c.criSock, "cri-socket", names.CRISocket, "cluster: CRI-O's socket on the nodes")
	pf.StringVar(&c.mockkpFrom, "mockkp-from", "", "cluster: copy the mockkp settings (MOCKKP_*, KP_*) from this lab env file (a lab whose mockkp the cluster reaches)")
	pf.StringVar(&c.addNodeCmd, "add-node-cmd", "", "cluster: command (the node name is appended) that adds a node and waits until it is Ready: capability add-node")
	pf.StringVar(&c.removeNodeCmd, "remove-node-cmd", "", "cluster: command (the node name is appended) that removes a node")
}

// clusterLab builds the cluster lab from the flags.
func (f *flagpole) clusterLab(s *cli.Streams) (lab.Lab, error) {
	c := f.clusterOpts
	return clusterlab.New(clusterlab.Options{Kubeconfig: c.kubeconfig, Registry: c.registry, NodeRegistry: c.nodeRegistry, CAFile: c.caFile, TLSVerify: c.tlsVerify,
		Creds: c.creds, AuthFile: c.authFile, CertDir: c.certDir, EnvPath: f.envPath(),
		Out: cmp.Or(f.out, filepath.Join("_out", "cluster")), FixturesManifest: c.fixturesManifest, Marker: c.marker,
		AgentBinary: c.agentBinary, SyncerNamespace: c.syncerNamespace, SyncSubdir: c.syncSubdir, KeysRoot: c.keysRoot,
		CRISocket: c.criSock, MockKPFrom: c.mockkpFrom, AddNodeCmd: c.addNodeCmd, RemoveNodeCmd: c.removeNodeCmd,
		Logger: s.Logger})
}
