package labconfig

import (
	"fmt"

	"github.com/keysync-dev/keysync/internal/names"
)

// KindInput are the kind lab's names that the node image's files carry.
type KindInput struct {
	// Registry is the lab registry on the kind network (host:port).
	Registry string
	// RegistryAliases reach Registry too (the host's published port).
	RegistryAliases []string
	// RegistryNames are other host names of the registry on the kind network (its network
	// aliases), pulled from without rewrite.
	RegistryNames []string
	// GlobalAuthFile is CRI-O's global_auth_file on the nodes (see CRIO.GlobalAuthFile).
	GlobalAuthFile string
	// PauseVersion is the preloaded pause image's tag (versions.env PAUSE_VERSION).
	PauseVersion string
}

// kubeadmRegistry is where kubeadm names its control-plane images; the kind node image
// preloads them under these names.
const kubeadmRegistry = "registry.k8s.io"

// Kind returns the kind node image's parameters: CRI-O at the node's fixed paths with its own
// default storage and state, systemd cgroups (kind's kubelet), keysync-runtime-wrapper as
// runc's path, and the control-plane images preloaded from registry.k8s.io.
func Kind(in KindInput) (Params, error) {
	if in.PauseVersion == "" || !plain(in.PauseVersion) {
		return Params{}, fmt.Errorf("invalid pause version %q", in.PauseVersion)
	}
	return Params{
		Lab:             "kind",
		Registry:        in.Registry,
		RegistryAliases: in.RegistryAliases,
		RegistryNames:   in.RegistryNames,
		Preloaded:       []string{kubeadmRegistry},
		CRIO: CRIO{
			Listen:          names.CRISocket,
			KeysPath:        names.KeysRoot,
			SignaturePolicy: "/etc/containers/policy.json",
			PauseImage:      kubeadmRegistry + "/pause:" + in.PauseVersion,
			GlobalAuthFile:  in.GlobalAuthFile,
			CgroupManager:   "systemd",
			PinnsPath:       "/usr/local/bin/pinns",
			RuntimePath:     "/usr/local/bin/keysync-runtime-wrapper",
			RuntimeRoot:     "/run/runc",
			MonitorPath:     "/usr/bin/conmon",
			NetworkDir:      "/etc/cni/net.d/",
			PluginDirs:      []string{"/usr/lib/cni/", "/opt/cni/bin/"},
		},
	}, nil
}
