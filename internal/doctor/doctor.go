// Package doctor is the addon runbook's troubleshooting list as checks: each check has an ID
// and a title and returns results (ok, warning, failure, skipped), each saying what was found
// and what to do. `keysync doctor` (internal/cli/doctor) runs them against a cluster and
// prints one line per result.
//
// Checks read the cluster through a clientset; the node-side checks (the keys tree, CRI-O's
// decryption_keys_path) go through a NodeInspector and are skipped without one. No result
// ever carries key material: Run removes the keyprotect-config API key from every string it
// returns, whatever a check or the cluster's Events put there.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/names"
)

// Status is a result's verdict.
type Status string

// The statuses. Only Fail makes a run fail; Skip says a check did not run and why.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip"
)

// Glyph is the status's one-character mark in text output.
func (s Status) Glyph() string {
	switch s {
	case OK:
		return "✓"
	case Warn:
		return "!"
	case Fail:
		return "✗"
	default:
		return "-"
	}
}

// Result is one finding of a check.
type Result struct {
	// Check and Title are the check's ID and title (set by Run).
	Check string `json:"check"`
	Title string `json:"title"`
	// Status is the verdict.
	Status Status `json:"status"`
	// Subject names what the result is about when a check has several (a node, a Secret,
	// an image); empty for a check with one result.
	Subject string `json:"subject,omitempty"`
	// Found says what was found.
	Found string `json:"found"`
	// Fix says what to do; empty when there is nothing to do.
	Fix string `json:"fix,omitempty"`
}

// Check is one item of the troubleshooting list.
type Check struct {
	ID    string
	Title string
	Run   func(ctx context.Context, e *Env) []Result
}

// Env is what checks read.
type Env struct {
	// Client reaches the cluster.
	Client kubernetes.Interface
	// Namespace is the synchronizer's namespace (default names.Namespace).
	Namespace string
	// Inspector reaches the nodes; nil skips the node-side checks.
	Inspector NodeInspector
	// NoInspectorReason says why Inspector is nil (shown in the skipped results).
	NoInspectorReason string
	// CheckKP makes the kp-access check get an IAM token and call Key Protect.
	CheckKP bool
	// AllowHTTPKP turns an http:// keyprotect-url into a warning instead of a failure (labs
	// whose mock Key Protect serves plain http).
	AllowHTTPKP bool
	// EventWindow is how far back Events count (default 1h).
	EventWindow time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (e *Env) now() time.Time {
	if e.Now == nil {
		return time.Now()
	}
	return e.Now()
}

func (e *Env) window() time.Duration {
	if e.EventWindow <= 0 {
		return time.Hour
	}
	return e.EventWindow
}

// Checks returns the troubleshooting list in the order it runs and prints.
func Checks() []Check {
	return []Check{
		{ID: "namespace", Title: "Namespace", Run: checkNamespace},
		{ID: "serviceaccount", Title: "ServiceAccount", Run: checkServiceAccount},
		{ID: "role", Title: "Role", Run: checkRole},
		{ID: "rolebinding", Title: "RoleBinding", Run: checkRoleBinding},
		{ID: "daemonset", Title: "DaemonSet", Run: checkDaemonSet},
		{ID: "pods", Title: "Synchronizer pods on every node", Run: checkPods},
		{ID: "kp-config", Title: "keyprotect-config", Run: checkKPConfig},
		{ID: "kp-access", Title: "Key Protect access", Run: checkKPAccess},
		{ID: "secret-events", Title: "Failure Events on key Secrets", Run: checkSecretEvents},
		{ID: "decrypt-failures", Title: "Pulls failing for a missing decryption key", Run: checkDecryptFailures},
		{ID: "node-keys-tree", Title: "Node keys tree readable by CRI-O", Run: checkNodeTrees},
		{ID: "node-keys-path", Title: "CRI-O decryption_keys_path covers the synchronizer", Run: checkNodeKeysPath},
	}
}

// Report is the outcome of a run.
type Report struct {
	// Schema identifies the JSON document's layout.
	Schema    string   `json:"schema"`
	Namespace string   `json:"namespace"`
	Summary   Summary  `json:"summary"`
	Results   []Result `json:"results"`
}

// Summary counts the results by status.
type Summary struct {
	OK   int `json:"ok"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

// Schema is Report.Schema.
const Schema = "keysync.dev/doctor/v1"

// Failed reports whether any result failed.
func (r Report) Failed() bool { return r.Summary.Fail > 0 }

// Preflight checks that the cluster answers at all; an error means doctor cannot run.
func Preflight(ctx context.Context, cs kubernetes.Interface) error {
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("failed to reach the API server: %w", err)
	}
	if _, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1}); err != nil {
		return fmt.Errorf("failed to list nodes (doctor needs to read nodes, pods, Events and the synchronizer's namespace): %w", err)
	}
	return nil
}

// Run runs checks in order and returns every result, with the keyprotect-config API key
// removed from all of them.
func Run(ctx context.Context, e Env, checks []Check) Report {
	if e.Namespace == "" {
		e.Namespace = names.Namespace
	}
	secrets := apiKeys(ctx, &e)
	rep := Report{Schema: Schema, Namespace: e.Namespace, Results: []Result{}}
	for _, c := range checks {
		for _, r := range c.Run(ctx, &e) {
			r.Check, r.Title = c.ID, c.Title
			r.Subject, r.Found, r.Fix = redact(r.Subject, secrets), redact(r.Found, secrets), redact(r.Fix, secrets)
			rep.Results = append(rep.Results, r)
			switch r.Status {
			case OK:
				rep.Summary.OK++
			case Warn:
				rep.Summary.Warn++
			case Fail:
				rep.Summary.Fail++
			default:
				rep.Summary.Skip++
			}
		}
	}
	return rep
}

// apiKeys returns the API key of keyprotect-config, read leniently (even from a config.json
// that does not validate), so that Run can remove it from every result.
func apiKeys(ctx context.Context, e *Env) []string {
	s, err := e.Client.CoreV1().Secrets(e.Namespace).Get(ctx, names.KPConfigSecret, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	var c kpkey.Config
	if json.Unmarshal(s.Data[names.KPConfigKey], &c) != nil || strings.TrimSpace(c.APIKey) == "" {
		return nil
	}
	return []string{c.APIKey, strings.TrimSpace(c.APIKey)}
}

func redact(s string, secrets []string) string {
	for _, k := range secrets {
		if len(k) >= 4 {
			s = strings.ReplaceAll(s, k, "[REDACTED]")
		}
	}
	return s
}

// Result constructors.
func ok(subject, found string) Result { return Result{Status: OK, Subject: subject, Found: found} }
func warn(subject, found, fix string) Result {
	return Result{Status: Warn, Subject: subject, Found: found, Fix: fix}
}
func fail(subject, found, fix string) Result {
	return Result{Status: Fail, Subject: subject, Found: found, Fix: fix}
}
func skip(subject, why string) Result {
	return Result{Status: Skip, Subject: subject, Found: "skipped: " + why}
}

// apiFail turns a failed API read into a result: missing objects and refused reads get their
// own advice.
func apiFail(subject, what string, err error, fixMissing string) Result {
	switch {
	case apierrors.IsNotFound(err):
		return fail(subject, what+" not found", fixMissing)
	case apierrors.IsForbidden(err):
		return fail(subject, "cannot read "+what+": forbidden", "run doctor with a kubeconfig that may read it")
	default:
		return fail(subject, fmt.Sprintf("failed to read %s: %v", what, err), "check the cluster's API server and the kubeconfig")
	}
}

// clip shortens cluster-provided messages to one readable line.
func clip(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		return s[:297] + "..."
	}
	return s
}
