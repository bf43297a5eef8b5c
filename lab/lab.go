package lab

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Lab is one kind of lab: the node lab (lab/nodelab), the kind lab (lab/kindlab) and any other
// cluster prepared for the suites (the "cluster" lab). The CLI drives every kind through this
// interface (`keysync lab up|down|status --kind node|kind|cluster`); the suites never import
// a lab, they read the env file it writes.
type Lab interface {
	// Kind is the lab's KEYSYNC_LAB value.
	Kind() string
	// Up brings the lab up, or repairs it: what runs and matches its inputs stays, what is
	// missing or stopped is started again. It prints one ✓ line per step on out, writes the env
	// file and returns what it wrote.
	Up(ctx context.Context, out io.Writer) (Env, error)
	// Down removes everything Up made; Down on a lab that is not up succeeds.
	Down(ctx context.Context, out io.Writer) error
	// Status checks every component. It returns an error only when it cannot check; a lab
	// that is partly down is a Status whose Ready is false.
	Status(ctx context.Context) (Status, error)
}

// NodeAdder is implemented by labs that can add and remove nodes (capability add-node).
type NodeAdder interface {
	AddNode(ctx context.Context, name string, timeout time.Duration) error
	RemoveNode(ctx context.Context, name string, timeout time.Duration) error
}

// Disrupter is implemented by labs that break their own parts on purpose, for the faults
// area (capabilities kill-syncer and restart-apiserver; `keysync lab disrupt`).
type Disrupter interface {
	// KillSyncer kills the synchronizer with SIGKILL on every node and returns once it runs
	// again.
	KillSyncer(ctx context.Context, out io.Writer) error
	// RestartAPIServer stops kube-apiserver and returns once it serves again.
	RestartAPIServer(ctx context.Context, out io.Writer) error
}

// RegistryRotator is implemented by labs whose registry requires credentials (capability
// registry-auth) and can change its password: RotateRegistryPassword gives the registry a new
// random password and rewrites the lab's auth file (REGISTRY_AUTH_FILE) without restarting
// anything; what pulled with the old password fails from then on. The env file's
// ROTATE_REGISTRY_PASSWORD_CMD runs it (`keysync lab rotate-registry-password`).
type RegistryRotator interface {
	RotateRegistryPassword(ctx context.Context) error
}

// Status is what Lab.Status found, one entry per component in bring-up order.
type Status struct {
	Kind       string
	Components []Component
}

// Component is one part of a lab (a process, a container, the cluster, a file).
type Component struct {
	Name string
	Up   bool
	// Detail says what was found: a pid and address when up, why not when down.
	Detail string
}

// Ready reports whether the lab has components and every one is up.
func (s Status) Ready() bool {
	if len(s.Components) == 0 {
		return false
	}
	for _, c := range s.Components {
		if !c.Up {
			return false
		}
	}
	return true
}

// Write prints one line per component (✓ or ✗, name, detail) and a last line "<kind> lab:
// ready" or "<kind> lab: NOT ready (N of M components down)".
func (s Status) Write(w io.Writer) error {
	down := 0
	for _, c := range s.Components {
		mark := "✓"
		if !c.Up {
			mark, down = "✗", down+1
		}
		if _, err := fmt.Fprintf(w, "%s %-12s %s\n", mark, c.Name, c.Detail); err != nil {
			return err
		}
	}
	verdict := "ready"
	switch {
	case len(s.Components) == 0:
		verdict = "NOT ready (not up)"
	case down > 0:
		verdict = fmt.Sprintf("NOT ready (%d of %d components down)", down, len(s.Components))
	}
	_, err := fmt.Fprintf(w, "%s lab: %s\n", s.Kind, verdict)
	return err
}
