package kindlab

import (
	"fmt"

	"github.com/keysync-dev/keysync/lab/labconfig"
)

// RegistryHostAlias is RegistryHostAddr by name: references made with it resolve on the nodes
// to the registry container too.
const RegistryHostAlias = "localhost:5001"

// NodeImageParams are the kind node image's part of the shared lab configuration
// (lab/labconfig): the lab registry on the kind network, reachable by its host-port names too.
func NodeImageParams(pauseVersion string) (labconfig.Params, error) {
	return labconfig.Kind(labconfig.KindInput{
		Registry:        RegistryNodeAddr,
		RegistryAliases: []string{RegistryHostAddr, RegistryHostAlias},
		RegistryNames:   []string{RegistryPullAddr, RegistryPrivateAddr},
		GlobalAuthFile:  NodeAuthFile,
		PauseVersion:    pauseVersion,
	})
}

// NodeImageFiles renders the node image's configuration files, keyed by their path relative
// to the image's root. hack/build-node-image.sh writes them into the build context
// (hack/render-labconfig); nodeimage/files holds only what is the kind nodes' alone.
func NodeImageFiles(pauseVersion string) (map[string][]byte, error) {
	p, err := NodeImageParams(pauseVersion)
	if err != nil {
		return nil, fmt.Errorf("failed to configure the kind node image: %w", err)
	}
	f, err := labconfig.Render(p)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		"etc/crio/crio.conf.d/10-keysync.conf": f.DropIn,
		"etc/containers/registries.conf":       f.RegistriesConf,
		"etc/containers/policy.json":           f.Policy,
	}, nil
}
