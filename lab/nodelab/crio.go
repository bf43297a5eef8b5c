package nodelab

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/lab"
)

// crioConfig is what the CRI-O drop-in needs to know.
type crioConfig struct {
	layout Layout
	// pinns is the pinns binary built with CRI-O.
	pinns string
	// runtimePath is runc, or the runtime wrapper on hosts lacking CAP_SYS_RESOURCE.
	runtimePath string
	// monitorPath is conmon.
	monitorPath string
	// registry is the lab registry, host:port.
	registry string
	// pauseImage is the pause image reference in the lab registry.
	pauseImage string
	// cniPluginDir holds the CNI plugins (Debian's containernetworking-plugins).
	cniPluginDir string
}

// blockedRegistries are the outside registries the lab must never reach.
func blockedRegistries() []string {
	return []string{"docker.io", "registry-1.docker.io", "index.docker.io", "quay.io", "registry.k8s.io",
		"k8s.gcr.io", "gcr.io", "ghcr.io", "public.ecr.aws", "mcr.microsoft.com", "registry.fedoraproject.org",
		"registry.access.redhat.com", "registry.redhat.io", "icr.io", "us.icr.io", "de.icr.io"}
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string { return strconv.Quote(s) }

// dropIn renders the CRI-O drop-in: every path under the work dir, overlay on cgroupfs, keys
// at layout.KeysRoot, runc (or the wrapper) with conmon, the lab's pause image, NRI and
// metrics off.
func (c crioConfig) dropIn() string {
	l := c.layout
	q := tomlString
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by keysync's node lab (lab/nodelab); regenerated on every up.
[crio]
root = %s
runroot = %s
storage_driver = "overlay"
log_dir = %s
version_file = %s
version_file_persist = %s
clean_shutdown_file = %s

[crio.api]
listen = %s
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
cgroup_manager = "cgroupfs"
decryption_keys_path = %s
container_exits_dir = %s
container_attach_socket_dir = %s
namespaces_dir = %s
pinns_path = %s
default_runtime = "runc"
drop_infra_ctr = true
apparmor_profile = "unconfined"
selinux = false
log_level = "info"

[crio.runtime.runtimes.runc]
runtime_path = %s
runtime_type = "oci"
runtime_root = %s
monitor_path = %s
monitor_cgroup = "pod"
monitor_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

[crio.image]
pause_image = %s
pause_command = ""
signature_policy = %s
insecure_registries = [%s]

[crio.network]
network_dir = %s
plugin_dirs = [%s]

[crio.metrics]
enable_metrics = false

[crio.tracing]
enable_tracing = false

[crio.nri]
enable_nri = false
`,
		q(l.CRIORoot()), q(l.CRIORunRoot()), q(l.CRIOLogDir()),
		q(filepath.Join(l.CRIORunDir(), "version")), q(filepath.Join(l.CRIODir(), "version")),
		q(filepath.Join(l.CRIODir(), "clean.shutdown")),
		q(l.CRISocket()),
		q(l.KeysRoot()), q(filepath.Join(l.CRIORunDir(), "exits")), q(filepath.Join(l.CRIORunDir(), "attach")),
		q(filepath.Join(l.CRIORunDir(), "ns")), q(c.pinns),
		q(c.runtimePath), q(filepath.Join(l.CRIORunDir(), "runc")), q(c.monitorPath),
		q(c.pauseImage), q(l.CRIOPolicy()), q(c.registry),
		q(l.CNIConfDir()), q(c.cniPluginDir))
	return b.String()
}

// registriesConf renders registries.conf: short names are never resolved, every well-known
// outside registry is blocked, the lab registry is plain HTTP.
func (c crioConfig) registriesConf() string {
	var b strings.Builder
	b.WriteString("# Written by keysync's node lab: nothing outside the lab registry can be reached.\n")
	b.WriteString("unqualified-search-registries = []\nshort-name-mode = \"enforcing\"\n\n")
	fmt.Fprintf(&b, "[[registry]]\nprefix = %s\nlocation = %s\ninsecure = true\nblocked = false\n\n", tomlString(c.registry), tomlString(c.registry))
	for _, r := range blockedRegistries() {
		fmt.Fprintf(&b, "[[registry]]\nprefix = %s\nlocation = %s\nblocked = true\n\n", tomlString(r), tomlString(r))
	}
	return b.String()
}

// policy renders the signature policy: reject everything but the lab registry (and local
// storage references, which CRI-O uses for images it already holds).
func (c crioConfig) policy() ([]byte, error) {
	accept := []map[string]string{{"type": "insecureAcceptAnything"}}
	p := map[string]any{
		"default": []map[string]string{{"type": "reject"}},
		"transports": map[string]any{
			"docker":             map[string]any{c.registry: accept},
			"containers-storage": map[string]any{"": accept},
		},
	}
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode signature policy: %w", err)
	}
	return append(data, '\n'), nil
}

// write lays down the drop-in, an empty main config, registries.conf and the policy, and
// creates the directories CRI-O expects.
func (c crioConfig) write() error {
	l := c.layout
	for _, d := range []string{l.CRIOConfDir(), l.CRIORoot(), l.CRIORunRoot(), l.CRIOLogDir(), l.CRIORunDir(),
		l.KeysRoot(), l.CNIConfDir(), l.RegistriesConfDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	pol, err := c.policy()
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data []byte
	}{
		{l.CRIOMainConf(), []byte("# keysync node lab: everything is in crio.conf.d/.\n")},
		{filepath.Join(l.CRIOConfDir(), "10-keysync-lab.conf"), []byte(c.dropIn())},
		{l.RegistriesConf(), []byte(c.registriesConf())},
		{l.CRIOPolicy(), pol},
	}
	for _, f := range files {
		if err := atomicfile.Write(f.path, f.data, 0o644); err != nil {
			return fmt.Errorf("failed to write CRI-O config: %w", err)
		}
	}
	return nil
}

// args are CRI-O's command line: the lab's own config, drop-in dir and registries.conf, so no
// file under /etc is read for these.
func (c crioConfig) args() []string {
	l := c.layout
	return []string{
		"--config", l.CRIOMainConf(),
		"--config-dir", l.CRIOConfDir(),
		"--registries-conf", l.RegistriesConf(),
		"--registries-conf-dir", l.RegistriesConfDir(),
	}
}

// dialCRI connects to a CRI socket.
func dialCRI(socket string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("failed to dial CRI socket %s: %w", socket, err)
	}
	return conn, nil
}

// criHealth is CRI-O's health check: the CRI Version call answers and reports runtime status
// ready.
func criHealth(socket string) lab.HealthCheck {
	return func(ctx context.Context) error {
		if _, err := os.Stat(socket); err != nil {
			return fmt.Errorf("no socket yet: %w", err)
		}
		conn, err := dialCRI(socket)
		if err != nil {
			return err
		}
		defer conn.Close()
		rt := runtimeapi.NewRuntimeServiceClient(conn)
		if _, err := rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
			return fmt.Errorf("CRI Version failed: %w", err)
		}
		st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
		if err != nil {
			return fmt.Errorf("CRI Status failed: %w", err)
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.GetType() == runtimeapi.RuntimeReady && !c.GetStatus() {
				return fmt.Errorf("runtime not ready: %s", c.GetMessage())
			}
		}
		return nil
	}
}

// removeAllPods stops and removes every pod sandbox (and so its containers) CRI-O knows, so
// that no container process outlives the lab.
func removeAllPods(ctx context.Context, socket string) (int, error) {
	conn, err := dialCRI(socket)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("failed to list pod sandboxes: %w", err)
	}
	for _, p := range pods.GetItems() {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			return 0, fmt.Errorf("failed to stop pod sandbox %s: %w", p.GetId(), err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.GetId()}); err != nil {
			return 0, fmt.Errorf("failed to remove pod sandbox %s: %w", p.GetId(), err)
		}
	}
	return len(pods.GetItems()), nil
}
