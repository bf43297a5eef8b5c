package cluster

import (
	"fmt"

	"github.com/keysync-dev/keysync/internal/ociimage"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/agentbin"
)

// AgentRepo is the agent image's repository under the registry the suites push to.
const AgentRepo = "keysync-suites/node-agent"

// AgentImage is the agent image: the agent binary bin (cmd/keysync-node-agent, static,
// linux/amd64: nothing else is in the image) at AgentBinary, FROM scratch, whose entrypoint
// waits. Its tag names its contents (TagOf). agentbin.Load finds the binary.
func AgentImage(bin []byte) (ociimage.Image, error) {
	if err := agentbin.CheckStatic(bin); err != nil {
		return ociimage.Image{}, fmt.Errorf("the node agent image: %w", err)
	}
	layer, err := ociimage.NewLayer(ociimage.File(AgentBinary, 0o755, bin))
	if err != nil {
		return ociimage.Image{}, err
	}
	return ociimage.Image{Layers: []*ociimage.Layer{layer}, Entrypoint: []string{AgentBinary, nodedriver.OpWait},
		Labels: map[string]string{labelName: AgentName}, CreatedBy: "keysync lab up --kind cluster"}, nil
}

// TagOf is the first 12 hex digits of the image config's digest.
func TagOf(img ociimage.Image) (string, error) {
	_, d, err := img.Config()
	if err != nil {
		return "", err
	}
	return d.Encoded()[:12], nil
}
