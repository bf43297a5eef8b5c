// Package lab holds what every keysync lab shares: the lab description that suites read (the
// env file, see Env), supervision of the host processes a lab runs (Process), and bring-up as
// ordered steps with a status line and timing per step (Steps).
//
// The labs themselves live in subpackages: lab/nodelab (Docker-free: CRI-O and a kube-apiserver
// as host processes on loopback) and the kind lab.
package lab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/internal/names"
)

// DefaultEnvFile is where a lab writes its description, relative to the checkout.
const DefaultEnvFile = names.LabEnvFile

// Kinds of lab.
const (
	KindNode = "node"
	KindKind = "kind"
	// KindCluster is any other cluster (a real one), reached through the suites' agent pods
	// (`keysync lab up --kind cluster` writes its env file).
	KindCluster = "cluster"
)

// Capability is something a lab can do that some features need. The suites branch on
// capabilities (Env.Has), never on the lab's kind: a new lab, or a real cluster, gets every
// feature its capabilities allow. The set is closed: ParseCapability rejects other words.
type Capability string

// The capabilities.
const (
	// CapCluster: a Kubernetes cluster whose nodes run the synchronizer as the runbook's
	// DaemonSet (kind lab, any cluster); the node lab runs the synchronizer as a host process.
	CapCluster Capability = "cluster"
	// CapIsolated: the lab blocks every outside registry and host name (the labs, not a real
	// cluster); the isolation feature checks it.
	CapIsolated Capability = "isolated"
	// CapAddNode: ADD_NODE_CMD and REMOVE_NODE_CMD add and remove a node (resilience).
	CapAddNode Capability = "add-node"
	// CapMockKP: a mockkp with its admin API reachable from the runner (MOCKKP_* keys), so the
	// Key Protect features may create keyprotect-config and inject faults.
	CapMockKP Capability = "mockkp"
	// CapRunImage: the node access can run a container from a pulled image.
	CapRunImage Capability = "run-image"
	// CapKMS: the lab's kube-apiserver encrypts Secrets at rest through keysync's KMS plug-in.
	CapKMS Capability = "kms"
	// CapEtcd: the runner can read etcd's raw values (ETCD_* keys).
	CapEtcd Capability = "etcd"
	// CapRegistryAuth: the lab registry requires credentials (REGISTRY_AUTH_FILE).
	CapRegistryAuth Capability = "registry-auth"
	// CapKillSyncer: KILL_SYNCER_CMD kills the synchronizer with SIGKILL on every node and
	// returns once it runs again (the faults area).
	CapKillSyncer Capability = "kill-syncer"
	// CapRestartAPIServer: RESTART_APISERVER_CMD stops kube-apiserver and returns once it
	// serves again (the faults area).
	CapRestartAPIServer Capability = "restart-apiserver"
	// CapKPPublicNames: IAM's and Key Protect's public host names reach the lab's mockkp for
	// the synchronizer under test, over TLS with a lab CA it trusts (KP_CA_FILE): the Key
	// Protect features give it a keyprotect-config with KP_PUBLIC_URL and no token-url (the
	// runbook's fields only), so a synchronizer with no token URL setting is judged too.
	// Needs CapMockKP.
	CapKPPublicNames Capability = "kp-public-names"
	// CapPlant: the runner writes into a node's keys tree itself (NODE_ACCESS host: file
	// operations on this host; docker: docker exec and docker cp into the node container), so
	// the foreign area can put there what a synchronizer did not write (a key, a symlink). The
	// node agent stays read-only on the tree (least privilege): with agent pods (pod) nothing
	// can plant.
	CapPlant Capability = "plant"
)

// Capabilities lists every capability in a stable order.
var Capabilities = []Capability{CapCluster, CapIsolated, CapAddNode, CapMockKP, CapRunImage, CapKMS, CapEtcd, CapRegistryAuth,
	CapKillSyncer, CapRestartAPIServer, CapKPPublicNames, CapPlant}

// ParseCapability validates s against the closed set.
func ParseCapability(s string) (Capability, error) {
	if slices.Contains(Capabilities, Capability(s)) {
		return Capability(s), nil
	}
	return "", fmt.Errorf("unknown capability %q (known: %s)", s, joinCaps(Capabilities))
}

func joinCaps(cs []Capability) string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return strings.Join(out, ",")
}

// NodeAccess is how the runner reaches a node's keys tree and CRI socket: the transport of the
// node agent protocol. The set is closed.
type NodeAccess string

// The node accesses.
const (
	// AccessHost: the node is this host (node lab): paths and the CRI socket are local.
	AccessHost NodeAccess = "host"
	// AccessDocker: each node is a Docker container named like the node (kind lab).
	AccessDocker NodeAccess = "docker"
	// AccessPod: agent pods on each node, reached by pod exec (any cluster).
	AccessPod NodeAccess = "pod"
)

// Env is the lab description, written by a lab's bring-up and read by the suites (contract 4).
// On disk it is an env file: one KEY=VALUE per line, '#' comments, no quoting; each value is
// the rest of the line after the first '='. Only the *_CMD keys and SYNCHRONIZER may hold
// spaces, so read the file with a parser (ParseEnv, or sed), not by sourcing it in a shell.
type Env struct {
	// Lab is KEYSYNC_LAB: "node", "kind" or "cluster". It names the lab in reports; the
	// suites decide what to run from Capabilities and NodeAccess, never from this name.
	Lab string
	// Synchronizer is SYNCHRONIZER: what is under test, as the reports print it ("reference
	// keysync-syncer", a command line, a kustomize dir, "none"); "" is unknown.
	Synchronizer string
	// Capabilities is CAPABILITIES, comma-separated on disk: what the lab can do.
	Capabilities []Capability
	// NodeAccess is NODE_ACCESS: how the runner reaches nodes (default by Lab: node → host,
	// kind → docker, cluster → pod).
	NodeAccess NodeAccess
	// AddNodeCmd and RemoveNodeCmd are ADD_NODE_CMD and REMOVE_NODE_CMD: command lines (split
	// on spaces; the node name is appended) that add a node and wait until it is Ready, and
	// remove it. Set with CapAddNode.
	AddNodeCmd    string
	RemoveNodeCmd string
	// KillSyncerCmd and RestartAPIServerCmd are KILL_SYNCER_CMD and RESTART_APISERVER_CMD:
	// command lines (split on spaces, no arguments appended) set with CapKillSyncer and
	// CapRestartAPIServer.
	KillSyncerCmd       string
	RestartAPIServerCmd string
	// Kubeconfig is KUBECONFIG: the absolute path of an admin kubeconfig for the lab's cluster.
	Kubeconfig string
	// Nodes is NODES: the node names, comma-separated on disk.
	Nodes []string
	// CRIEndpoint is CRI_ENDPOINT: the absolute path of CRI-O's unix socket on the host (node
	// lab) or on every node (cluster; default /var/run/crio/crio.sock).
	CRIEndpoint string
	// KeysRoot is KEYS_ROOT: the host path of CRI-O's decryption_keys_path (node lab), or its
	// path on every node (cluster; default /etc/crio/keys).
	KeysRoot string
	// NodeAgentImage is NODE_AGENT_IMAGE: cluster, the suites' agent image every node pulls.
	NodeAgentImage string
	// SyncSubdir is SYNC_SUBDIR: the synchronizer's directory under KeysRoot ("synced").
	SyncSubdir string
	// Registry is REGISTRY: host:port of the lab registry, as the nodes pull from it.
	Registry string
	// RegistryAuthFile is REGISTRY_AUTH_FILE: the absolute path of a containers-auth.json
	// (mode 0600) with the registry's credentials for every host name that reaches it
	// (CapRegistryAuth). Every push and pull of the run reads it; the env file never holds
	// the password itself. It may change during a run (rotation): read it when needed.
	RegistryAuthFile string
	// RegistryPush is REGISTRY_PUSH: host[:port] the runner pushes to when it differs from
	// REGISTRY (the nodes' address of the same registry); empty: REGISTRY.
	RegistryPush string
	// RegistryPrefix is REGISTRY_PREFIX: the repository prefix the run's pushes go under
	// (empty: none).
	RegistryPrefix string
	// RegistryCertDir is REGISTRY_CERT_DIR: a directory with the registry's CA (ca.crt) for
	// the runner's pushes; empty: the system's roots.
	RegistryCertDir string
	// RotateRegistryPasswordCmd is ROTATE_REGISTRY_PASSWORD_CMD: a command line (split on
	// spaces) that gives the registry a new password and rewrites RegistryAuthFile, without
	// restarting anything; empty when the lab cannot rotate it. It may hold spaces.
	RotateRegistryPasswordCmd string
	// MockKPURL, MockKPTokenURL and MockKPAdminURL are MOCKKP_URL, MOCKKP_TOKEN_URL and
	// MOCKKP_ADMIN_URL: mockkp as reachable from where the suites run.
	MockKPURL      string
	MockKPTokenURL string
	MockKPAdminURL string
	// MockKPClusterURL and MockKPClusterTokenURL are MOCKKP_CLUSTER_URL and
	// MOCKKP_CLUSTER_TOKEN_URL: mockkp as the synchronizer reaches it (what goes into the
	// keyprotect-config Secret).
	MockKPClusterURL      string
	MockKPClusterTokenURL string
	// KPPublicURL is KP_PUBLIC_URL: Key Protect's public URL that reaches the lab's mockkp
	// from the synchronizer (CapKPPublicNames); KPCAFile is KP_CA_FILE: the absolute path of
	// the lab CA's certificate the synchronizer is told to trust.
	KPPublicURL string
	KPCAFile    string
	// KPInstanceID, KPAPIKey and KPRootKeyID are KP_INSTANCE_ID, KP_APIKEY and KP_ROOT_KEY_ID:
	// the seeded mockkp instance, its API key and a root key.
	KPInstanceID string
	KPAPIKey     string
	KPRootKeyID  string
	// FixturesManifest is FIXTURES_MANIFEST: the absolute path of the pushed fixtures'
	// manifest.json.
	FixturesManifest string
	// SyncerNamespace is SYNCER_NAMESPACE: the namespace the synchronizer watches.
	SyncerNamespace string
	// EtcdEndpoints is ETCD_ENDPOINTS (comma-separated on disk): etcd's client URLs as the
	// runner reaches them, for reading raw values (kube-apiserver's default prefix /registry).
	// Required with CapEtcd. EtcdCAFile, EtcdCertFile and EtcdKeyFile are ETCD_CA_FILE,
	// ETCD_CERT_FILE and ETCD_KEY_FILE: the runner's TLS client files when the endpoints are
	// https (empty for plain http).
	EtcdEndpoints []string
	EtcdCAFile    string
	EtcdCertFile  string
	EtcdKeyFile   string
	// KMSRootKeyID is KMS_ROOT_KEY_ID: the Key Protect root key (CRK_ID) keysync's KMS plug-in
	// wraps kube-apiserver's DEKs with (CapKMS; in mockkp when the lab has CapMockKP).
	KMSRootKeyID string
	// KMSHealthURL is KMS_HEALTH_URL: the plug-in's readiness URL as the runner reaches it
	// (CapKMS; empty when the runner cannot reach it).
	KMSHealthURL string
	// Extra holds keys this version does not know, so that newer writers stay readable.
	Extra map[string]string
}

// envField binds one key to its field. Lists are the single source for reading and writing.
type envField struct {
	key string
	get func(*Env) string
	set func(*Env, string)
}

func envFields() []envField {
	str := func(key string, p func(*Env) *string) envField {
		return envField{key: key, get: func(e *Env) string { return *p(e) }, set: func(e *Env, v string) { *p(e) = v }}
	}
	return []envField{
		str("KEYSYNC_LAB", func(e *Env) *string { return &e.Lab }),
		str("SYNCHRONIZER", func(e *Env) *string { return &e.Synchronizer }),
		{key: "CAPABILITIES", get: func(e *Env) string { return joinCaps(e.Capabilities) }, set: func(e *Env, v string) {
			e.Capabilities = nil
			for _, c := range strings.Split(v, ",") {
				if c = strings.TrimSpace(c); c != "" {
					e.Capabilities = append(e.Capabilities, Capability(c))
				}
			}
		}},
		{key: "NODE_ACCESS", get: func(e *Env) string { return string(e.NodeAccess) }, set: func(e *Env, v string) { e.NodeAccess = NodeAccess(v) }},
		str("ADD_NODE_CMD", func(e *Env) *string { return &e.AddNodeCmd }),
		str("REMOVE_NODE_CMD", func(e *Env) *string { return &e.RemoveNodeCmd }),
		str("KILL_SYNCER_CMD", func(e *Env) *string { return &e.KillSyncerCmd }),
		str("RESTART_APISERVER_CMD", func(e *Env) *string { return &e.RestartAPIServerCmd }),
		str("KUBECONFIG", func(e *Env) *string { return &e.Kubeconfig }),
		{key: "NODES", get: func(e *Env) string { return strings.Join(e.Nodes, ",") }, set: func(e *Env, v string) {
			e.Nodes = nil
			for _, n := range strings.Split(v, ",") {
				if n = strings.TrimSpace(n); n != "" {
					e.Nodes = append(e.Nodes, n)
				}
			}
		}},
		str("CRI_ENDPOINT", func(e *Env) *string { return &e.CRIEndpoint }),
		str("KEYS_ROOT", func(e *Env) *string { return &e.KeysRoot }),
		str("SYNC_SUBDIR", func(e *Env) *string { return &e.SyncSubdir }),
		str("REGISTRY", func(e *Env) *string { return &e.Registry }),
		str("REGISTRY_AUTH_FILE", func(e *Env) *string { return &e.RegistryAuthFile }),
		str("REGISTRY_PUSH", func(e *Env) *string { return &e.RegistryPush }),
		str("REGISTRY_PREFIX", func(e *Env) *string { return &e.RegistryPrefix }),
		str("REGISTRY_CERT_DIR", func(e *Env) *string { return &e.RegistryCertDir }),
		str("ROTATE_REGISTRY_PASSWORD_CMD", func(e *Env) *string { return &e.RotateRegistryPasswordCmd }),
		str("MOCKKP_URL", func(e *Env) *string { return &e.MockKPURL }),
		str("MOCKKP_TOKEN_URL", func(e *Env) *string { return &e.MockKPTokenURL }),
		str("MOCKKP_ADMIN_URL", func(e *Env) *string { return &e.MockKPAdminURL }),
		str("MOCKKP_CLUSTER_URL", func(e *Env) *string { return &e.MockKPClusterURL }),
		str("MOCKKP_CLUSTER_TOKEN_URL", func(e *Env) *string { return &e.MockKPClusterTokenURL }),
		str("KP_PUBLIC_URL", func(e *Env) *string { return &e.KPPublicURL }),
		str("KP_CA_FILE", func(e *Env) *string { return &e.KPCAFile }),
		str("KP_INSTANCE_ID", func(e *Env) *string { return &e.KPInstanceID }),
		str("KP_APIKEY", func(e *Env) *string { return &e.KPAPIKey }),
		str("KP_ROOT_KEY_ID", func(e *Env) *string { return &e.KPRootKeyID }),
		str("FIXTURES_MANIFEST", func(e *Env) *string { return &e.FixturesManifest }),
		str("SYNCER_NAMESPACE", func(e *Env) *string { return &e.SyncerNamespace }),
		str("NODE_AGENT_IMAGE", func(e *Env) *string { return &e.NodeAgentImage }),
		{key: "ETCD_ENDPOINTS", get: func(e *Env) string { return strings.Join(e.EtcdEndpoints, ",") }, set: func(e *Env, v string) {
			e.EtcdEndpoints = nil
			for _, u := range strings.Split(v, ",") {
				if u = strings.TrimSpace(u); u != "" {
					e.EtcdEndpoints = append(e.EtcdEndpoints, u)
				}
			}
		}},
		str("ETCD_CA_FILE", func(e *Env) *string { return &e.EtcdCAFile }),
		str("ETCD_CERT_FILE", func(e *Env) *string { return &e.EtcdCertFile }),
		str("ETCD_KEY_FILE", func(e *Env) *string { return &e.EtcdKeyFile }),
		str("KMS_ROOT_KEY_ID", func(e *Env) *string { return &e.KMSRootKeyID }),
		str("KMS_HEALTH_URL", func(e *Env) *string { return &e.KMSHealthURL }),
	}
}

// Has reports whether the lab has capability c.
func (e Env) Has(c Capability) bool { return slices.Contains(e.Capabilities, c) }

// Access returns NodeAccess, or the default for the lab's kind when the file names none (env
// files written before NODE_ACCESS existed).
func (e Env) Access() NodeAccess {
	if e.NodeAccess != "" {
		return e.NodeAccess
	}
	switch e.Lab {
	case KindNode:
		return AccessHost
	case KindKind:
		return AccessDocker
	}
	return AccessPod
}

// Validate checks what every lab must describe.
func (e Env) Validate() error {
	var errs []error
	for _, c := range e.Capabilities {
		if _, err := ParseCapability(string(c)); err != nil {
			errs = append(errs, fmt.Errorf("CAPABILITIES: %w", err))
		}
	}
	switch e.NodeAccess {
	case "", AccessHost, AccessDocker, AccessPod:
	default:
		errs = append(errs, fmt.Errorf("NODE_ACCESS is %q, want %q, %q or %q", e.NodeAccess, AccessHost, AccessDocker, AccessPod))
	}
	if e.Has(CapAddNode) && (e.AddNodeCmd == "" || e.RemoveNodeCmd == "") {
		errs = append(errs, errors.New("capability add-node needs ADD_NODE_CMD and REMOVE_NODE_CMD"))
	}
	if e.Has(CapRegistryAuth) && e.RegistryAuthFile == "" {
		errs = append(errs, errors.New("capability registry-auth needs REGISTRY_AUTH_FILE"))
	}
	if e.RegistryAuthFile != "" && !filepath.IsAbs(e.RegistryAuthFile) {
		errs = append(errs, fmt.Errorf("REGISTRY_AUTH_FILE %q is not an absolute path", e.RegistryAuthFile))
	}
	if e.Has(CapEtcd) && len(e.EtcdEndpoints) == 0 {
		errs = append(errs, errors.New("capability etcd needs ETCD_ENDPOINTS"))
	}
	for _, u := range e.EtcdEndpoints {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("ETCD_ENDPOINTS: %q is not an http(s) URL", u))
		}
	}
	if (e.EtcdCertFile == "") != (e.EtcdKeyFile == "") {
		errs = append(errs, errors.New("ETCD_CERT_FILE and ETCD_KEY_FILE go together"))
	}
	if e.Has(CapKillSyncer) && e.KillSyncerCmd == "" {
		errs = append(errs, errors.New("capability kill-syncer needs KILL_SYNCER_CMD"))
	}
	if e.Has(CapKPPublicNames) && (!e.Has(CapMockKP) || !strings.HasPrefix(e.KPPublicURL, "https://")) {
		errs = append(errs, errors.New("capability kp-public-names needs capability mockkp and an https KP_PUBLIC_URL"))
	}
	if e.KPCAFile != "" && !filepath.IsAbs(e.KPCAFile) {
		errs = append(errs, fmt.Errorf("KP_CA_FILE %q is not an absolute path", e.KPCAFile))
	}
	if e.Has(CapRestartAPIServer) && e.RestartAPIServerCmd == "" {
		errs = append(errs, errors.New("capability restart-apiserver needs RESTART_APISERVER_CMD"))
	}
	if e.Has(CapPlant) && e.Access() != AccessHost && e.Access() != AccessDocker {
		errs = append(errs, fmt.Errorf("capability plant needs NODE_ACCESS %s or %s (the node agent is read-only on the keys tree), not %s",
			AccessHost, AccessDocker, e.Access()))
	}
	switch e.Lab {
	case KindNode, KindKind, KindCluster:
	case "":
		errs = append(errs, errors.New("KEYSYNC_LAB is missing"))
	default:
		errs = append(errs, fmt.Errorf("KEYSYNC_LAB is %q, want %q, %q or %q", e.Lab, KindNode, KindKind, KindCluster))
	}
	if e.Kubeconfig == "" {
		errs = append(errs, errors.New("KUBECONFIG is missing"))
	}
	if len(e.Nodes) == 0 {
		errs = append(errs, errors.New("NODES is missing"))
	}
	if e.Access() == AccessPod && e.NodeAgentImage == "" {
		errs = append(errs, errors.New("NODE_AGENT_IMAGE is missing (NODE_ACCESS=pod)"))
	}
	if e.Access() == AccessHost {
		if e.CRIEndpoint == "" {
			errs = append(errs, errors.New("CRI_ENDPOINT is missing (NODE_ACCESS=host)"))
		}
		if e.KeysRoot == "" {
			errs = append(errs, errors.New("KEYS_ROOT is missing (NODE_ACCESS=host)"))
		}
	}
	return errors.Join(errs...)
}

// LoadEnv reads and validates a lab env file.
func LoadEnv(path string) (Env, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Env{}, fmt.Errorf("failed to read lab env file %s: %w", path, err)
	}
	env, err := ParseEnv(data)
	if err != nil {
		return Env{}, fmt.Errorf("failed to parse lab env file %s: %w", path, err)
	}
	if err := env.Validate(); err != nil {
		return Env{}, fmt.Errorf("invalid lab env file %s: %w", path, err)
	}
	return env, nil
}

// ParseEnv parses env file contents without validating them.
func ParseEnv(data []byte) (Env, error) {
	fields := map[string]envField{}
	for _, f := range envFields() {
		fields[f.key] = f
	}
	var env Env
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(strings.TrimPrefix(key, "export "))
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return Env{}, fmt.Errorf("line %d: want KEY=VALUE", n)
		}
		if f, known := fields[key]; known {
			f.set(&env, value)
			continue
		}
		if env.Extra == nil {
			env.Extra = map[string]string{}
		}
		env.Extra[key] = value
	}
	if err := sc.Err(); err != nil {
		return Env{}, fmt.Errorf("failed to read env lines: %w", err)
	}
	return env, nil
}

// Marshal renders the env file: known keys in contract order, then Extra sorted by key.
func (e Env) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("# keysync lab description (lab.Env); read by the suites with --lab-env.\n")
	write := func(k, v string) error {
		if strings.ContainsAny(v, "\n\r") {
			return fmt.Errorf("value of %s holds a line break", k)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
		return nil
	}
	for _, f := range envFields() {
		if err := write(f.key, f.get(&e)); err != nil {
			return nil, err
		}
	}
	keys := make([]string, 0, len(e.Extra))
	for k := range e.Extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "" || strings.ContainsAny(k, "= \t\n#") {
			return nil, fmt.Errorf("invalid extra key %q", k)
		}
		if err := write(k, e.Extra[k]); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// WriteEnv validates env and writes it to path atomically with mode 0600 (it names the mock
// API key), creating the parent directory.
func WriteEnv(path string, env Env) error {
	if err := env.Validate(); err != nil {
		return fmt.Errorf("failed to write lab env file %s: %w", path, err)
	}
	data, err := env.Marshal()
	if err != nil {
		return fmt.Errorf("failed to render lab env file %s: %w", path, err)
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("failed to write lab env file: %w", err)
	}
	return nil
}

// RemoveEnvIf removes the env file at path only when ours says it describes the caller's lab
// (labs share the default path, so Down must not remove another lab's description). It
// returns a note for the step line: "absent", "removed" or "kept: not this lab's".
func RemoveEnvIf(path string, ours func(Env) bool) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "absent", nil
	}
	if err != nil {
		return "", fmt.Errorf("failed to read lab env file: %w", err)
	}
	if env, err := ParseEnv(data); err != nil || !ours(env) {
		return "kept: not this lab's", nil
	}
	if err := os.Remove(path); err != nil {
		return "", fmt.Errorf("failed to remove lab env file: %w", err)
	}
	return "removed", nil
}
