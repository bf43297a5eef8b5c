// Package conformance is keysync's conformance suite as a library: the features an image key
// synchronizer must pass, written once against a Context (the lab, a Kubernetes client and a
// node driver) and a small T interface, so that `go test ./suites` (through
// e2e-framework, see E2E) and `keysync conformance` (through Run, with JUnit output) execute
// the same bodies.
//
// Every feature carries one label area=plain|kp|revocation|rotation|hygiene|bad-input|foreign|
// latency|addon|pod|network|isolation|at-rest|registry|resilience|fixtures|faults (features that disrupt the lab also disruptive=true) and ends
// with the hygiene assessments (required: the keys tree holds only usable private keys, no
// symlink or temp file, and a plain image still pulls; recommended: key files are 0600). Every
// assessment belongs to a Profile (required or recommended, see profile.go). Features create their Secrets in the
// synchronizer's namespace under a run-ID name prefix and undo everything they create, in
// reverse order, even when a step fails.
package conformance

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/plant"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// LabelArea is the label key every feature sets; its values are the Area constants.
const LabelArea = "area"

// Area groups features for selection (--labels area=kp).
type Area string

// The areas.
const (
	AreaPlain      Area = "plain"
	AreaKP         Area = "kp"
	AreaRevocation Area = "revocation"
	AreaRotation   Area = "rotation"
	AreaHygiene    Area = "hygiene"
	AreaBadInput   Area = "bad-input"
	// The cluster areas need a lab with a Kubernetes cluster running the addon (kind or a
	// real cluster); on the node lab their features skip and say so.
	AreaAddon      Area = "addon"
	AreaPod        Area = "pod"
	AreaNetwork    Area = "network"
	AreaIsolation  Area = "isolation"
	AreaResilience Area = "resilience"
	// AreaFixtures pulls every encrypted fixture variant; AreaFaults breaks Key Protect, the
	// synchronizer and kube-apiserver (area_fixtures.go, area_faults.go).
	AreaFixtures Area = "fixtures"
	AreaFaults   Area = "faults"
	// AreaAtRest needs a lab whose kube-apiserver encrypts Secrets through keysync's KMS
	// plug-in (capability kms) and whose etcd the runner reads (etcd).
	AreaAtRest Area = "at-rest"
	// AreaRegistry: registry credentials and image keys are two independent locks
	// (capability registry-auth; its Pod steps need cluster).
	AreaRegistry Area = "registry"
	// AreaForeign: what others put in the keys tree (a key, a symlink) is left alone and
	// never followed (capability plant, area_foreign.go).
	AreaForeign Area = "foreign"
	// AreaLatency: how fast keys land (recommended: p99 ≤ 1 s, area_latency.go).
	AreaLatency Area = "latency"
)

// LabelDisruptive marks features that restart or add lab components ("true").
const LabelDisruptive = "disruptive"

// Areas lists every area in suite order.
var Areas = []Area{AreaPlain, AreaKP, AreaRevocation, AreaRotation, AreaHygiene, AreaBadInput, AreaForeign, AreaLatency,
	AreaAddon, AreaPod, AreaNetwork, AreaIsolation, AreaAtRest, AreaRegistry, AreaResilience, AreaFixtures, AreaFaults}

// Event reasons a synchronizer records on Secrets.
const (
	ReasonKeySynced     = "KeySynced"
	ReasonKeyRejected   = "KeyRejected"
	ReasonUnwrapFailed  = "UnwrapFailed"
	ReasonConfigMissing = "ConfigMissing"
)

// DefaultNamespace is the synchronizer's namespace when the lab does not name one.
const DefaultNamespace = names.Namespace

// What CRI-O (ocicrypt) answers when its keys tree cannot decrypt an image:
// MissingKeyMessage when the tree holds no private key at all, NoUsableKeyMessage when it
// holds keys but none for this image.
const (
	MissingKeyMessage  = "missing private key needed for decryption"
	NoUsableKeyMessage = "none of the private keys could be used for decryption"
)

// T is the part of *testing.T the features use. *testing.T implements it; Run supplies its
// own for the CLI.
type T interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	FailNow()
	Failed() bool
	Cleanup(func())
}

// Context is everything a feature may use. Build it with NewContext (or by hand in tests).
type Context struct {
	// Lab is the lab description (env file); features branch on Lab.Has(capability), never
	// on Lab.Lab.
	Lab lab.Env
	// Client talks to the lab's cluster.
	Client kubernetes.Interface
	// Driver reaches the nodes. NewContext guards it (nodedriver.Guard): it reads back only
	// the bytes of keys in Owned.
	Driver nodedriver.Driver
	// KP reaches the cluster's own Key Protect where keyprotect-config already exists (the
	// run never changes it; see useKP).
	KP LiveKP
	// Owned holds the SHA-256 of every key this run put in a Secret (ownKey); nil: none.
	Owned *nodedriver.OwnedKeys
	// Fixtures are the images and keys the features use.
	Fixtures Fixtures
	// RunID prefixes every object name this run creates ("ks-<id>-...").
	RunID string
	// Namespace is the synchronizer's namespace (Lab.SyncerNamespace or DefaultNamespace).
	Namespace string
	// SyncTimeout bounds every wait for the synchronizer (file appears/goes, Event recorded);
	// default DefaultSyncTimeout.
	SyncTimeout time.Duration
	// P99SyncLatency bounds the latency area's p99 (recommended); default
	// DefaultP99SyncLatency.
	P99SyncLatency time.Duration
	// Profile is the profile the run is judged by (default DefaultProfile): under
	// ProfileRequired a failed recommended check is a warning.
	Profile Profile
	// PollInterval is how often waits poll.
	PollInterval time.Duration
	// Logger narrates steps (default: discard).
	Logger *slog.Logger
	// NodeAdder adds nodes to the lab's cluster; nil when the lab cannot (the feature that
	// needs it skips that part and says so).
	NodeAdder NodeAdder
	// Planter writes into the nodes' keys trees (lab capability plant, see planter.go); nil
	// when the lab's node access cannot (agent pods are read-only on the tree).
	Planter *plant.Planter
	// authPuller pulls with explicit registry credentials (or none) on the lab's node access;
	// nil when the base driver cannot send credentials (command hooks).
	authPuller AuthPuller
}

// NodeAdder adds a node to the lab's cluster: the lab capability add-node (the env file's
// ADD_NODE_CMD and REMOVE_NODE_CMD), or the --hook-add-node and --hook-remove-node commands.
type NodeAdder interface {
	// AddNode joins a new node named name, waits until it is Ready and returns a node driver
	// that reaches it.
	AddNode(ctx context.Context, name string) (nodedriver.Driver, error)
	// RemoveNode takes the node out of the cluster again; an error wrapping
	// nodedriver.ErrUnsupported means the lab cannot, and the node stays.
	RemoveNode(ctx context.Context, name string) error
}

// StepFunc is one step of a feature.
type StepFunc func(ctx context.Context, t T, c *Context)

// Step is a named assessment: one check, in one profile.
type Step struct {
	Name string
	Fn   StepFunc
	// Profile is the check's profile; every feature's step names one (a test checks it).
	Profile Profile
	// Independent marks a check that does not depend on the outcome of the ones before it:
	// it runs even after a required assessment stopped (see check.go).
	Independent bool
}

// Feature is one behaviour with its setup (run on the feature's T: register cleanups there
// with t.Cleanup) and its assessments (each on its own T). Assessments are ordered so that the
// core verdict (required) comes first; a failed recommended check never hides later ones, a
// stopped required check skips only the assessments that depend on it (check.go).
type Feature struct {
	Name string
	Area Area
	// Labels are further labels (besides area), e.g. disruptive=true.
	Labels map[string]string
	Setup  StepFunc
	Assess []Step
}

// Label returns the feature's value for a label key ("" when unset).
func (f Feature) Label(key string) string {
	if key == LabelArea {
		return string(f.Area)
	}
	return f.Labels[key]
}

// nameFor returns an object name unique to this run and feature ("ks-<run>-<short>").
func (c *Context) nameFor(short string) string {
	return fmt.Sprintf("ks-%s-%s", c.RunID, short)
}

func (c *Context) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Context) syncTimeout() time.Duration {
	if c.SyncTimeout <= 0 {
		return DefaultSyncTimeout
	}
	return c.SyncTimeout
}

func (c *Context) pollInterval() time.Duration {
	if c.PollInterval <= 0 {
		return 250 * time.Millisecond
	}
	return c.PollInterval
}
