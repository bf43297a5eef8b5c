package cluster

import (
	"debug/elf"
	"fmt"
	"os"

	"github.com/keysync-dev/keysync/internal/ociimage"
)

// AgentRepo is the agent image's repository under the registry the suites push to.
const AgentRepo = "keysync-suites/node-agent"

// AgentImage is the agent image: the keysync binary at path (static, linux/amd64: nothing else
// is in the image) at AgentBinary, FROM scratch. Its tag names its contents (TagOf).
func AgentImage(path string) (ociimage.Image, error) {
	if err := checkStatic(path); err != nil {
		return ociimage.Image{}, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return ociimage.Image{}, fmt.Errorf("failed to read the keysync binary: %w", err)
	}
	layer, err := ociimage.NewLayer(ociimage.File(AgentBinary, 0o755, data))
	if err != nil {
		return ociimage.Image{}, err
	}
	return ociimage.Image{Layers: []*ociimage.Layer{layer}, Entrypoint: []string{AgentBinary, "node-agent", "wait"},
		Labels: map[string]string{labelName: AgentName}, CreatedBy: "keysync conformance init"}, nil
}

// TagOf is the first 12 hex digits of the image config's digest.
func TagOf(img ociimage.Image) (string, error) {
	_, d, err := img.Config()
	if err != nil {
		return "", err
	}
	return d.Encoded()[:12], nil
}

// checkStatic refuses what cannot run FROM scratch on the nodes: a binary for another
// platform, or one that needs a dynamic loader.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("the keysync binary %s is not an ELF program the nodes can run: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("the keysync binary %s is built for %s: the agent image needs linux/amd64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("the keysync binary %s is dynamically linked: build it with CGO_ENABLED=0 (make build) for the agent image", path)
		}
	}
	return nil
}
