package conformance

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/leftovers"
	"github.com/keysync-dev/keysync/suites/internal/plant"
)

// Guard makes a run interrupt-safe: whatever stops it (Ctrl-C, SIGTERM, SIGHUP, the end of
// `go test -timeout`, or the run simply ending), everything it created in the cluster is
// removed: what carries its run ID (Secrets, Pods, Services, the node agent's DaemonSet, pull
// Secret and Lease, the agent's namespace only when the run created it, a keyprotect-config it
// made; see package internal/leftovers) and the node driver (Close). A SIGKILL cannot be caught: `keysync conformance cleanup` removes what such a run
// left (in the nodes' keys trees too with --lab-env of a lab with capability plant).
//
// Build it with NewGuard, pass it in Options.Guard (NewContext arms it with the run's client,
// run ID and the node driver's Close), and either call Cleanup when the run ends (keysync
// conformance) or Watch to handle signals and the test timeout (go test ./suites).
type Guard struct {
	cancel context.CancelFunc
	stderr io.Writer
	// exit ends the process after an interrupt's cleanup (os.Exit; tests replace it).
	exit func(code int)
	// settle is the pause between the two sweeps of an interrupt (calls in flight when the
	// run was cancelled may still create objects).
	settle time.Duration

	mu     sync.Mutex
	client kubernetes.Interface
	runID  string
	// namespaces are where the run creates objects (its sweep looks only there).
	namespaces []string
	closeFn    func() error
	// planter holds what the run planted in the nodes' keys trees (nil: nothing can be).
	planter *plant.Planter

	closeOnce sync.Once
	closeErr  error
	fireOnce  sync.Once
	// fired is closed when Interrupt begins.
	fired chan struct{}
}

// NewGuard returns a Guard and the run's context: cancelled when the guard fires (so that the
// features stop), else when parent is.
func NewGuard(parent context.Context, stderr io.Writer) (*Guard, context.Context) {
	ctx, cancel := context.WithCancel(parent)
	if stderr == nil {
		stderr = io.Discard
	}
	return &Guard{cancel: cancel, stderr: stderr, exit: os.Exit, settle: 3 * time.Second, fired: make(chan struct{})}, ctx
}

// arm records the run's client and ID (NewContext calls it as soon as it has them).
func (g *Guard) arm(client kubernetes.Interface, runID string, namespaces ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.client, g.runID, g.namespaces = client, runID, namespaces
}

// armPlanter records the run's planter: Cleanup undoes what it still has planted.
func (g *Guard) armPlanter(p *plant.Planter) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.planter = p
}

// wrapClose records the node driver's Close and returns it wrapped so that it runs at most
// once, whoever calls it first (FinishEnv or the guard).
func (g *Guard) wrapClose(closeFn func() error) func() error {
	once := func() error {
		g.closeOnce.Do(func() { g.closeErr = closeFn() })
		return g.closeErr
	}
	g.mu.Lock()
	g.closeFn = once
	g.mu.Unlock()
	return once
}

// RunID is the armed run's ID ("" before NewContext got that far).
func (g *Guard) RunID() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.runID
}

// Cleanup removes everything the run created: what it planted in the nodes' keys trees
// (first: a planted symlink fails every pull on its node), what carries its run ID, then the
// node driver.
// It runs on its own context (ctx's values, not its cancellation: the run's context is
// usually the cancelled one), bounded by two minutes, and may be called more than once.
func (g *Guard) Cleanup(ctx context.Context) ([]leftovers.Object, error) {
	limit := 2 * time.Minute
	if d, ok := ctx.Deadline(); ok { // a deadline of ctx's is kept, its cancellation is not
		limit = min(limit, time.Until(d))
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
	defer cancel()
	g.mu.Lock()
	client, runID, namespaces, closeFn, planter := g.client, g.runID, g.namespaces, g.closeFn, g.planter
	g.mu.Unlock()
	var errs []error
	var removed []leftovers.Object
	if planter != nil {
		pending := planter.Pending()
		err := planter.UndoAll(ctx)
		left := planter.Pending()
		for _, p := range pending {
			if !slices.ContainsFunc(left, func(l plant.Planted) bool { return l.Node == p.Node && l.Path == p.Path }) {
				fmt.Fprintf(g.stderr, "keysync: removed planted %s\n", p)
			}
		}
		for _, p := range left {
			fmt.Fprintf(g.stderr, "keysync: still planted %s\n", p)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to remove what run %s planted in the keys trees: %w", runID, err))
		}
	}
	if client != nil && runID != "" {
		r, err := leftovers.Sweep(ctx, client, leftovers.Options{RunID: runID, Namespaces: namespaces})
		removed = r
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to remove what run %s created: %w", runID, err))
		}
	}
	if closeFn != nil {
		if err := closeFn(); err != nil {
			errs = append(errs, fmt.Errorf("failed to close the node driver: %w", err))
		}
	}
	return removed, errors.Join(errs...)
}

// Finish is the end of a run that Watch guards: when an interrupt is under way it waits for it
// (Interrupt ends the process with its own exit code), else it cleans up (Cleanup) and returns
// code, or 1 when the cleanup failed.
func (g *Guard) Finish(ctx context.Context, code int) int {
	select {
	case <-g.fired:
		select {} // Interrupt exits
	default:
	}
	if _, err := g.Cleanup(ctx); err != nil {
		fmt.Fprintf(g.stderr, "FAIL: %v\n", err)
		return 1
	}
	return code
}

// Interrupt stops the run (cancels its context), removes what it created and ends the process
// with code; reason says why on stderr. Only the first call acts; later ones (a second
// Ctrl-C) are told that cleanup is under way and return.
func (g *Guard) Interrupt(reason string, code int) {
	g.interrupt(reason, code, 2*time.Minute)
}

// interrupt is Interrupt with a budget for both sweeps together (the watchdog's is what is
// left before the test timeout kills the process).
func (g *Guard) interrupt(reason string, code int, budget time.Duration) {
	first := false
	g.fireOnce.Do(func() { first = true })
	if !first {
		fmt.Fprintf(g.stderr, "keysync: %s: still removing what the run created (SIGKILL abandons it; then run `keysync conformance cleanup --run-id %s`)\n", reason, g.RunID())
		return
	}
	close(g.fired)
	fmt.Fprintf(g.stderr, "keysync: %s: stopping the run and removing what it created (run ID %s)\n", reason, g.RunID())
	g.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	removed, err := g.Cleanup(ctx)
	// Calls in flight when the run was cancelled may still create something: sweep again.
	time.Sleep(g.settle)
	more, err2 := g.Cleanup(ctx)
	removed = append(removed, more...)
	for _, o := range removed {
		fmt.Fprintf(g.stderr, "keysync: removed %s\n", o)
	}
	if err = errors.Join(err, err2); err != nil {
		fmt.Fprintf(g.stderr, "keysync: cleanup incomplete: %v; run `keysync conformance cleanup --run-id %s`\n", err, g.RunID())
	} else {
		fmt.Fprintf(g.stderr, "keysync: cleanup done: %d object(s) removed\n", len(removed))
	}
	fmt.Fprintf(g.stderr, "FAIL: %s\n", reason)
	g.exit(code)
}

// Exit codes after an interrupt: 128+signal as a shell reports it, and 2 (go test's own code
// for a timeout) for the watchdog.
const (
	ExitSIGHUP  = 129
	ExitSIGINT  = 130
	ExitSIGTERM = 143
	ExitTimeout = 2
)

// Watch handles SIGINT, SIGTERM and SIGHUP with Interrupt, and the death of the parent
// process (`go test` killed alone: the test binary is re-parented) too; it ignores SIGPIPE (so
// that the dead parent's pipe does not kill the run before its cleanup on its next write), and
// when timeout > 0 starts a watchdog that calls Interrupt margin before timeout
// has passed: `go test -timeout` panics and kills the process with no cleanup, so the guard
// must act first. stop ends the watching.
func (g *Guard) Watch(timeout, margin time.Duration) (stop func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	signal.Ignore(syscall.SIGPIPE)
	done := make(chan struct{})
	var timer *time.Timer
	if timeout > 0 {
		after := timeout - margin
		if after < 0 {
			after = 0
		}
		timer = time.AfterFunc(after, func() {
			// Both sweeps must end before go test's panic kills the process.
			go g.interrupt(fmt.Sprintf("the test timeout (-test.timeout %s) ends in %s", timeout, margin), ExitTimeout, margin-time.Second)
		})
	}
	ppid := os.Getppid()
	orphaned := time.NewTicker(500 * time.Millisecond)
	go func() {
		defer orphaned.Stop()
		for {
			select {
			case <-done:
				return
			case <-orphaned.C:
				// `go test` killed on its own (SIGTERM to the go command does not reach the
				// test binary): the binary is re-parented.
				if p := os.Getppid(); p != ppid {
					go g.Interrupt(fmt.Sprintf("the parent process %d (go test) is gone", ppid), ExitSIGTERM)
					return
				}
			case s := <-sigs:
				code := ExitSIGINT
				switch s {
				case syscall.SIGTERM:
					code = ExitSIGTERM
				case syscall.SIGHUP:
					code = ExitSIGHUP
				}
				go g.Interrupt("received "+signalName(s), code)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			if timer != nil {
				timer.Stop()
			}
			close(done)
		})
	}
}

func signalName(s os.Signal) string {
	switch s {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}

// TestTimeout is `go test`'s -test.timeout from fs (flag.CommandLine in a test binary, after
// parsing), 0 when there is none.
func TestTimeout(fs *flag.FlagSet) time.Duration {
	f := fs.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			return d
		}
	}
	d, err := time.ParseDuration(f.Value.String())
	if err != nil {
		return 0
	}
	return d
}

// CleanupMargin is how long before the test timeout the watchdog starts cleanup: a quarter of
// the timeout, at most 2 minutes.
func CleanupMargin(timeout time.Duration) time.Duration {
	return min(timeout/4, 2*time.Minute)
}
