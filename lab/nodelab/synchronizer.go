package nodelab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labca"
)

// SynchronizerNone is the Synchronizer option for a lab without a synchronizer process: the
// person testing theirs runs it.
const SynchronizerNone = "none"

// ReferenceSynchronizer is how the env file names the default synchronizer.
const ReferenceSynchronizer = "reference keysync-syncer"

// Placeholders of a synchronizer command line, expanded by ExpandSynchronizer.
var placeholderRE = regexp.MustCompile(`\{[a-z-]+\}`)

// SynchronizerHelp documents the command line of --synchronizer.
const SynchronizerHelp = `node: the synchronizer under test: a command line (split on spaces, no quoting; ` +
	`{kubeconfig}, {keys-dir}, {staging-dir}, {namespace}, {node-name} and {ca-file} are expanded; it runs with IAM's and Key Protect's ` +
	`public names resolving to the lab's mockkp and SSL_CERT_FILE={ca-file}, the lab CA), "none" (run yours yourself), ` +
	`or empty for the reference keysync-syncer`

// placeholders are the values a synchronizer command line may use.
func (r *runner) placeholders() map[string]string {
	return map[string]string{
		"{kubeconfig}":  r.l.Kubeconfig(),
		"{keys-dir}":    r.l.SyncedDir(),
		"{staging-dir}": r.l.StagingDir(),
		"{namespace}":   Namespace,
		"{node-name}":   NodeName,
		"{ca-file}":     labca.FilesIn(r.l.LabCADir()).CA,
	}
}

// ExpandSynchronizer splits cmdline on spaces and replaces the placeholders in every word; an
// unknown placeholder or an empty command line is an error.
func ExpandSynchronizer(cmdline string, values map[string]string) ([]string, error) {
	words := strings.Fields(cmdline)
	if len(words) == 0 {
		return nil, errors.New("the synchronizer command line is empty")
	}
	var errs []error
	for i, w := range words {
		words[i] = placeholderRE.ReplaceAllStringFunc(w, func(ph string) string {
			v, ok := values[ph]
			if !ok {
				errs = append(errs, fmt.Errorf("unknown placeholder %s in the synchronizer command line", ph))
				return ph
			}
			return v
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return words, nil
}

// foreign reports whether the synchronizer under test is a command line of the user's.
func foreign(s string) bool { return s != "" && s != SynchronizerNone }

// synchronizerName is the env file's SYNCHRONIZER value for option s.
func synchronizerName(s string) string {
	if s == "" {
		return ReferenceSynchronizer
	}
	return s
}

// startForeign runs the user's synchronizer command line as the "syncer" process. It has no
// health check of its own: it is up while it runs (it must not exit within a second).
func (r *runner) startForeign(ctx context.Context, p *lab.Process, kubeconfig []byte) (string, error) {
	args, err := ExpandSynchronizer(r.opts.Synchronizer, r.placeholders())
	if err != nil {
		return "", err
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return "", fmt.Errorf("failed to find the synchronizer %s: %w", args[0], err)
	}
	public, err := r.publicNamesFor(p)
	if err != nil {
		return "", err
	}
	p.Path, p.Args, p.Health = path, args[1:], nil
	p.Fingerprint = fingerprint(append([]string{string(kubeconfig), public}, args...)...)
	note, err := ensure(ctx, p)
	if err != nil {
		return "", err
	}
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case <-time.After(time.Second):
	}
	if _, ok := p.Running(); !ok {
		return "", fmt.Errorf("the synchronizer %s exited right after it started (log %s)", args[0], p.LogFile)
	}
	return note + ", " + args[0], nil
}

// stopSynchronizer stops a synchronizer process the lab started earlier (for "none").
func (r *runner) stopSynchronizer(ctx context.Context, p *lab.Process) (string, error) {
	if pid, ok := p.Running(); ok {
		if err := p.Stop(ctx); err != nil {
			return "", err
		}
		return fmt.Sprintf("none: stopped the lab's pid %d; run yours", pid), nil
	}
	_ = os.Remove(p.PidFile)
	return "none: run yours", nil
}
