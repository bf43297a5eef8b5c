// Package nodelab is keysync's Docker-free node lab: one "node" made of host processes on
// loopback under one work dir — a registry, etcd + kube-apiserver (Secrets encrypted at rest
// through keysync's KMS plug-in), a seeded mockkp, CRI-O (its
// decryption_keys_path at <work>/keys) and the synchronizer writing <work>/keys/synced — with
// the fixtures pushed, a kubeconfig and a lab env file (lab.Env) for the suites.
//
// Lab implements lab.Lab. Up runs in the caller's process: it starts every component as a
// detached lab.Process (pid file, log file, health check, fingerprint of its inputs), pushes
// the pause image and the fixtures, writes the env file and returns; the processes outlive
// the command. Up reconciles: a process that runs, passes its health check and matches its
// fingerprint is kept, anything missing, stopped, unhealthy or changed is (re)started.
// Status reports one component per process, up only when it runs and is healthy. Down stops
// every process by its pid file, removes CRI-O's pods and unmounts what CRI-O mounted under
// the work dir.
//
// The lab needs root (CRI-O), the binaries of hack/build-crio.sh and hack/build-k8s.sh, and the
// Debian packages of hack/packages.txt (conmon, runc, docker-registry, catatonit, CNI plugins).
package nodelab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
)

// Fixed names of the node lab.
const (
	// NodeName is the lab's only node, as the synchronizer reports it.
	NodeName = "node-lab"
	// SyncSubdir is the synchronizer's directory under the keys root.
	SyncSubdir = names.SyncSubdir
	// Namespace is the namespace the synchronizer watches.
	Namespace = names.Namespace
)

// Options configure a node lab. Paths must be absolute (the CLI makes them so).
type Options struct {
	// WorkDir holds everything the lab writes and mounts (default _out/node-lab). Required.
	WorkDir string
	// EnvFile is where the lab description goes (default _out/lab.env). Required by Up.
	EnvFile string
	// BinDir holds keysync's binaries: mockkp, keysync-syncer, keysync-runtime-wrapper.
	// Required by Up.
	BinDir string
	// CRIOBinDir holds crio, pinns and crictl (hack/build-crio.sh). Required by Up.
	CRIOBinDir string
	// K8sBinDir holds kube-apiserver and etcd (hack/build-k8s.sh kube-apiserver). Required by Up.
	K8sBinDir string
	// SourceDir is a directory inside the keysync checkout (the fixtures' marker program is
	// built from it); empty means the working directory.
	SourceDir string
	// Synchronizer is the synchronizer under test: empty for the reference keysync-syncer,
	// SynchronizerNone for none (you run yours), else a command line whose placeholders
	// ExpandSynchronizer fills in (SynchronizerHelp).
	Synchronizer string
}

func (o Options) validateUp() error {
	var errs []error
	for _, p := range []struct{ name, path string }{{"work dir", o.WorkDir}, {"env file", o.EnvFile}, {"bin dir", o.BinDir},
		{"CRI-O bin dir", o.CRIOBinDir}, {"Kubernetes bin dir", o.K8sBinDir}} {
		if p.path == "" {
			errs = append(errs, fmt.Errorf("%s is not set", p.name))
		} else if !filepath.IsAbs(p.path) {
			errs = append(errs, fmt.Errorf("%s %q is not absolute", p.name, p.path))
		}
	}
	return errors.Join(errs...)
}

func (o Options) sourceDir() string {
	if o.SourceDir != "" {
		return o.SourceDir
	}
	if wd, err := os.Getwd(); err == nil {
		return wd
	}
	return o.WorkDir
}

// Lab is the node lab in one work dir.
type Lab struct {
	opts Options
}

var _ lab.Lab = (*Lab)(nil)

// New returns the node lab of opts.WorkDir, which must be absolute. Up checks the other
// options; Down and Status need only the work dir (and the env file, which Down removes when
// it describes this lab).
func New(opts Options) (*Lab, error) {
	if opts.WorkDir == "" || !filepath.IsAbs(opts.WorkDir) {
		return nil, fmt.Errorf("invalid node lab options: work dir %q must be absolute", opts.WorkDir)
	}
	if opts.EnvFile != "" && !filepath.IsAbs(opts.EnvFile) {
		return nil, fmt.Errorf("invalid node lab options: env file %q must be absolute", opts.EnvFile)
	}
	return &Lab{opts: opts}, nil
}

// Kind implements lab.Lab.
func (*Lab) Kind() string { return lab.KindNode }

// runner is one invocation's view of the lab: its options, layout and recorded state.
type runner struct {
	opts   Options
	l      Layout
	st     state
	token  string
	wrap   bool
	client *http.Client
}

func (n *Lab) runner() (*runner, error) {
	r := &runner{opts: n.opts, l: Layout{Dir: n.opts.WorkDir}, client: &http.Client{Timeout: 30 * time.Second}}
	if err := r.loadState(); err != nil {
		return nil, err
	}
	return r, nil
}

// Up brings the node lab up, or repairs it, printing one status line per step on out (the
// CLI's stderr), and returns the description it wrote to EnvFile. On failure the error names
// the failed step and the log file to read.
func (n *Lab) Up(ctx context.Context, out io.Writer) (lab.Env, error) {
	if err := n.opts.validateUp(); err != nil {
		return lab.Env{}, fmt.Errorf("invalid node lab options: %w", err)
	}
	r, err := n.runner()
	if err != nil {
		return lab.Env{}, err
	}
	if foreign(n.opts.Synchronizer) {
		// A bad command line fails before anything starts.
		if _, err := ExpandSynchronizer(n.opts.Synchronizer, r.placeholders()); err != nil {
			return lab.Env{}, fmt.Errorf("invalid node lab options: --synchronizer: %w", err)
		}
	}
	var env lab.Env
	steps := []lab.Step{{Name: "Checking the host", Run: r.checkHost}}
	if legacy := r.legacySupervisor(); legacy != nil {
		steps = append(steps, lab.Step{Name: "Stopping the old lab supervisor", Run: func(ctx context.Context) (string, error) {
			pid, _ := legacy.Running()
			return fmt.Sprintf("pid %d", pid), legacy.Stop(ctx)
		}})
	}
	steps = append(steps,
		lab.Step{Name: "Starting the registry", Run: r.startRegistry},
		lab.Step{Name: "Starting mockkp", Run: r.startMockKP},
		lab.Step{Name: "Pushing the pause image", Run: r.pushPause},
		lab.Step{Name: "Starting CRI-O", Run: r.startCRIO},
		lab.Step{Name: "Starting etcd", Run: r.startEtcd},
		lab.Step{Name: "Starting the KMS plug-in", Run: r.startKMSPlugin},
		lab.Step{Name: "Starting kube-apiserver", Run: r.startAPIServer},
		lab.Step{Name: "Encrypting existing Secrets", Run: r.encryptSecrets},
		lab.Step{Name: "Starting the synchronizer", Run: r.startSyncer},
		lab.Step{Name: "Pushing the fixtures", Run: r.pushFixtures},
		lab.Step{Name: "Writing the env file", Run: func(context.Context) (string, error) {
			var err error
			env, err = r.writeEnv(n.disruptCommands())
			return n.opts.EnvFile, err
		}},
	)
	if _, err := lab.RunSteps(ctx, out, false, steps); err != nil {
		return lab.Env{}, fmt.Errorf("failed to bring the node lab up (logs in %s): %w", r.l.LogDir(), err)
	}
	return env, nil
}

// Status checks every process of the lab: up when it runs and its health check passes.
func (n *Lab) Status(ctx context.Context) (lab.Status, error) {
	r, err := n.runner()
	if err != nil {
		return lab.Status{}, err
	}
	st := lab.Status{Kind: lab.KindNode}
	for _, c := range components() {
		p := r.process(c)
		addr := c.addr(r)
		if c.name == "syncer" {
			if r.st.Synchronizer == SynchronizerNone {
				continue // yours, not the lab's
			}
			if foreign(r.st.Synchronizer) {
				p.Health, addr = nil, "" // up while it runs; it serves nothing the lab knows
			}
		}
		comp := p.Check(ctx)
		if comp.Up && addr != "" {
			comp.Detail += ", " + addr
		}
		st.Components = append(st.Components, comp)
	}
	return st, nil
}

// Down stops every process still named by a pid file (reverse start order, CRI-O's pods
// first), kills containers a crashed CRI-O left, unmounts what is mounted under the work dir
// and removes the env file when it describes this lab. It is safe to run on a lab that is
// not up.
func (n *Lab) Down(ctx context.Context, out io.Writer) error {
	r, err := n.runner()
	if err != nil {
		return err
	}
	steps := r.teardownSteps()
	if n.opts.EnvFile != "" {
		steps = append(steps, lab.Step{Name: "Removing the env file", Run: func(context.Context) (string, error) {
			return r.removeEnv(n.opts.EnvFile)
		}})
	}
	if _, err := lab.RunSteps(ctx, out, true, steps); err != nil {
		return fmt.Errorf("failed to bring the node lab down: %w", err)
	}
	return nil
}
