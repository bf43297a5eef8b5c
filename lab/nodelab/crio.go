package nodelab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labconfig"
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

// params are the node lab's part of the shared lab configuration (lab/labconfig): every path
// CRI-O reads or writes is under the work dir, cgroupfs, the lab registry on loopback.
func (c crioConfig) params() labconfig.Params {
	l := c.layout
	return labconfig.Params{
		Lab:           "node",
		Registry:      c.registry,
		RegistryNames: registryNames(c.registry),
		CRIO: labconfig.CRIO{
			Listen:          l.CRISocket(),
			KeysPath:        l.KeysRoot(),
			SignaturePolicy: l.CRIOPolicy(),
			PauseImage:      c.pauseImage,
			// The pause image is in the lab registry, which requires credentials.
			PauseImageAuthFile: l.RegistryAuthFile(),
			CgroupManager:      "cgroupfs",
			PinnsPath:          c.pinns,
			RuntimePath:        c.runtimePath,
			RuntimeRoot:        filepath.Join(l.CRIORunDir(), "runc"),
			MonitorPath:        c.monitorPath,
			NetworkDir:         l.CNIConfDir(),
			PluginDirs:         []string{c.cniPluginDir},
			State: &labconfig.CRIOState{
				Root:               l.CRIORoot(),
				RunRoot:            l.CRIORunRoot(),
				LogDir:             l.CRIOLogDir(),
				VersionFile:        filepath.Join(l.CRIORunDir(), "version"),
				VersionFilePersist: filepath.Join(l.CRIODir(), "version"),
				CleanShutdownFile:  filepath.Join(l.CRIODir(), "clean.shutdown"),
				ExitsDir:           filepath.Join(l.CRIORunDir(), "exits"),
				AttachSocketDir:    filepath.Join(l.CRIORunDir(), "attach"),
				NamespacesDir:      filepath.Join(l.CRIORunDir(), "ns"),
			},
		},
	}
}

// dropInName is the node lab's CRI-O drop-in under CRIOConfDir.
const dropInName = "10-keysync-lab.conf"

// write renders the shared lab configuration for the node lab, lays down the drop-in, an empty
// main config, registries.conf and the policy, creates the directories CRI-O expects, and
// returns what it wrote.
func (c crioConfig) write() (labconfig.Files, error) {
	l := c.layout
	files, err := labconfig.Render(c.params())
	if err != nil {
		return labconfig.Files{}, fmt.Errorf("failed to render CRI-O config: %w", err)
	}
	for _, d := range []string{l.CRIOConfDir(), l.CRIORoot(), l.CRIORunRoot(), l.CRIOLogDir(), l.CRIORunDir(),
		l.KeysRoot(), l.CNIConfDir(), l.RegistriesConfDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return labconfig.Files{}, fmt.Errorf("failed to create %s: %w", d, err)
		}
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{l.CRIOMainConf(), []byte("# keysync node lab: everything is in crio.conf.d/.\n")},
		{filepath.Join(l.CRIOConfDir(), dropInName), files.DropIn},
		{l.RegistriesConf(), files.RegistriesConf},
		{l.CRIOPolicy(), files.Policy},
	} {
		if err := atomicfile.Write(f.path, f.data, 0o644); err != nil {
			return labconfig.Files{}, fmt.Errorf("failed to write CRI-O config: %w", err)
		}
	}
	return files, nil
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
