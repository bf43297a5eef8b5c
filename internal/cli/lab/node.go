package lab

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/nodelab"
)

// nodeFlags are --kind node's settings.
type nodeFlags struct {
	workDir, binDir, crioBinDir, k8sBinDir, sourceDir string
}

var nodeFlagNames = []string{"work-dir", "bin-dir", "crio-bin-dir", "k8s-bin-dir", "source-dir"}

func (n *nodeFlags) bind(pf *pflag.FlagSet) {
	pf.StringVar(&n.workDir, "work-dir", "_out/node-lab", "node: directory holding everything the lab writes and mounts")
	pf.StringVar(&n.binDir, "bin-dir", "", "node: directory with mockkp, keysync-syncer and keysync-runtime-wrapper (default: next to this binary)")
	pf.StringVar(&n.crioBinDir, "crio-bin-dir", os.Getenv("KEYSYNC_CRIO_BIN"), "node: directory with crio and pinns (hack/build-crio.sh; env KEYSYNC_CRIO_BIN)")
	pf.StringVar(&n.k8sBinDir, "k8s-bin-dir", os.Getenv("KEYSYNC_K8S_BIN"), "node: directory with kube-apiserver and etcd (hack/build-k8s.sh; env KEYSYNC_K8S_BIN)")
	pf.StringVar(&n.sourceDir, "source-dir", "", "node: directory inside the keysync checkout, to build the fixtures from (default: the working directory)")
}

// nodeLab builds the node lab from the flags.
func (f *flagpole) nodeLab() (lab.Lab, error) {
	opts, err := f.nodeOptions()
	if err != nil {
		return nil, err
	}
	return nodelab.New(opts)
}

// nodeOptions turns the flags into absolute paths.
func (f *flagpole) nodeOptions() (nodelab.Options, error) {
	n := f.nodeOpts
	if n.binDir == "" {
		self, err := os.Executable()
		if err != nil {
			return nodelab.Options{}, fmt.Errorf("failed to find the keysync binary: %w", err)
		}
		n.binDir = filepath.Dir(self)
	}
	opts := nodelab.Options{Synchronizer: f.synchronizer}
	for _, p := range []struct {
		dst *string
		src string
	}{{&opts.WorkDir, n.workDir}, {&opts.EnvFile, f.envPath()}, {&opts.BinDir, n.binDir},
		{&opts.CRIOBinDir, n.crioBinDir}, {&opts.K8sBinDir, n.k8sBinDir}, {&opts.SourceDir, n.sourceDir}} {
		if p.src == "" {
			continue
		}
		abs, err := filepath.Abs(p.src)
		if err != nil {
			return nodelab.Options{}, fmt.Errorf("failed to resolve %s: %w", p.src, err)
		}
		*p.dst = abs
	}
	return opts, nil
}
