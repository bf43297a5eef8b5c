package lab

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/lab"
	kl "github.com/keysync-dev/keysync/lab/kindlab"
)

// addonSteps are the kind lab's steps --skip can name.
var addonSteps = []string{"fixtures", "mockkp", "kms", "syncer"}

// kindFlags are --kind kind's settings.
type kindFlags struct {
	name, image, root, kubectl string
	workers                    int
	retain                     bool
	skip                       []string
	wait                       time.Duration
}

var kindFlagNames = []string{"name", "image", "workers", "retain", "root", "kubectl", "skip", "wait"}

func (k *kindFlags) bind(pf *pflag.FlagSet) {
	pf.StringVar(&k.name, "name", kl.DefaultName, "kind: the kind cluster's name")
	pf.StringVar(&k.image, "image", "", "kind: node image (hack/build-node-image.sh prints it; needed to create the cluster)")
	pf.IntVar(&k.workers, "workers", 1, "kind: number of worker nodes")
	pf.BoolVar(&k.retain, "retain", false, "kind: keep the node containers when creation fails (debugging)")
	pf.StringVar(&k.root, "root", ".", "kind: the keysync checkout (cmd/mockkp, cmd/keysync-syncer, syncer/deploy)")
	pf.StringVar(&k.kubectl, "kubectl", "", "kind: kubectl binary (hack/build-k8s.sh kubectl prints its directory)")
	pf.StringSliceVar(&k.skip, "skip", nil, "kind: addon steps to leave out: "+strings.Join(addonSteps, ","))
	pf.DurationVar(&k.wait, "wait", 3*time.Minute, "kind: how long to wait for one synchronizer pod per node")
}

// kindLab builds the kind lab from the flags, with the addon steps --skip leaves in.
func (f *flagpole) kindLab(s *cli.Streams) (lab.Lab, error) {
	k := f.kindOpts
	for _, step := range k.skip {
		if !slices.Contains(addonSteps, step) {
			return nil, fmt.Errorf("unknown step %q in --skip (want %s)", step, strings.Join(addonSteps, ", "))
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("failed to find the keysync binary: %w", err)
	}
	root, err := filepath.Abs(k.root)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve the checkout: %w", err)
	}
	opts := kl.Options{Name: k.name, Workers: k.workers, NodeImage: k.image, Retain: k.retain,
		OutDir: cmp.Or(f.out, filepath.Join("_out", "kind")), EnvPath: f.envPath(), Keysync: self,
		Logger: s.Logger, Out: s.ErrOut}
	parts := kl.Parts{Root: root, Kubectl: k.kubectl}
	if !slices.Contains(k.skip, "fixtures") {
		opts.Steps = append(opts.Steps, kl.FixturesStep(parts))
	}
	if !slices.Contains(k.skip, "mockkp") {
		opts.Steps = append(opts.Steps, kl.MockKPStep(parts))
		if !slices.Contains(k.skip, "kms") {
			opts.Steps = append(opts.Steps, kl.KMSStep(parts))
		}
	}
	switch {
	case f.synchronizer == kl.SynchronizerNone:
		opts.Steps = append(opts.Steps, kl.NoSyncerStep())
	case slices.Contains(k.skip, "syncer"):
	case f.synchronizer != "":
		opts.Steps = append(opts.Steps, kl.ForeignSyncerStep(parts, f.synchronizer), kl.WaitSyncerStep(parts, k.wait))
	default:
		opts.Steps = append(opts.Steps, kl.SyncerStep(parts), kl.WaitSyncerStep(parts, k.wait))
	}
	return kl.New(opts)
}
