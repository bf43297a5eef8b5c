package conformance

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"
	"sigs.k8s.io/e2e-framework/pkg/features"
	"sigs.k8s.io/e2e-framework/pkg/types"

	"github.com/keysync-dev/keysync/suites/conformance/report"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// Typed context keys (never bare strings).
type (
	contextKey struct{}
	closeKey   struct{}
)

// WithContext stores c in ctx.
func WithContext(ctx context.Context, c *Context) context.Context {
	return context.WithValue(ctx, contextKey{}, c)
}

// FromContext returns the Context stored by SetupEnv or BeforeEachTest.
func FromContext(ctx context.Context) (*Context, bool) {
	c, ok := ctx.Value(contextKey{}).(*Context)
	return c, ok
}

// SetupEnv returns the e2e-framework Setup func that loads the lab (see Options) and stores
// the Context; it fails the whole run, with how to start a lab, when there is none. The
// kubeconfig of e2e-framework's --kubeconfig flag is used unless o.Kubeconfig is set.
func SetupEnv(o Options) env.Func {
	return func(ctx context.Context, cfg *envconf.Config) (context.Context, error) {
		if o.Kubeconfig == "" {
			o.Kubeconfig = cfg.KubeconfigFile()
		}
		c, closeFn, err := NewContext(ctx, o)
		if err != nil {
			return ctx, err
		}
		cfg.WithKubeconfigFile(c.Lab.Kubeconfig).WithNamespace(c.Namespace)
		ctx = context.WithValue(ctx, closeKey{}, closeFn)
		return WithContext(ctx, c), nil
	}
}

// FinishEnv is SetupEnv's mirror: it releases the node driver.
func FinishEnv() env.Func {
	return func(ctx context.Context, _ *envconf.Config) (context.Context, error) {
		if closeFn, ok := ctx.Value(closeKey{}).(func() error); ok {
			if err := closeFn(); err != nil {
				return ctx, fmt.Errorf("failed to close node driver: %w", err)
			}
		}
		return ctx, nil
	}
}

// BeforeEachTest gives every test its own run ID (object-name prefix) so that tests never
// share objects.
func BeforeEachTest() types.TestEnvFunc {
	return func(ctx context.Context, _ *envconf.Config, t *testing.T) (context.Context, error) {
		c, ok := FromContext(ctx)
		if !ok {
			return ctx, fmt.Errorf("no conformance context: TestMain must register conformance.SetupEnv")
		}
		child := *c
		child.RunID = c.RunID + "-" + NewRunID()[:4]
		t.Logf("run ID %s", child.RunID)
		return WithContext(ctx, &child), nil
	}
}

// AfterEachTest is the safety net behind the features' own cleanup: it deletes any Secret
// still labelled with the test's run ID and fails the test if it had to.
func AfterEachTest() types.TestEnvFunc {
	return func(ctx context.Context, _ *envconf.Config, t *testing.T) (context.Context, error) {
		c, ok := FromContext(ctx)
		if !ok {
			return ctx, nil
		}
		leaked, err := c.DeleteLeftovers(ctx, c.RunID)
		if err != nil {
			return ctx, err
		}
		if len(leaked) > 0 {
			t.Errorf("test left Secrets behind (now deleted): %v", leaked)
		}
		return ctx, nil
	}
}

// DeleteLeftovers deletes the Secrets the suites created under runID (every run when runID is
// empty) and returns their names.
func (c *Context) DeleteLeftovers(ctx context.Context, runID string) ([]string, error) {
	sel := secrets.LabelManagedBy + "=" + secrets.ManagedByValue
	if runID != "" {
		sel += "," + secrets.LabelRunID + "=" + runID
	}
	list, err := c.Client.CoreV1().Secrets(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, fmt.Errorf("failed to list leftover Secrets: %w", err)
	}
	var names []string
	for _, s := range list.Items {
		names = append(names, s.Name)
		if err := c.Client.CoreV1().Secrets(c.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil {
			return names, fmt.Errorf("failed to delete leftover Secret %s: %w", s.Name, err)
		}
	}
	return names, nil
}

// E2E turns features into e2e-framework features, labelled area=<area>. Each assessment runs
// in its own T (check.go's runStep, as in Run) and its verdict is replayed on the subtest:
// the first line logged is the check marker (report.CheckMarker: area, feature, assessment,
// profile) that `keysync conformance report` reads back; a warning is logged as
// "WARN recommended: <reason>" on a passing subtest; a failure's diagnostics follow
// report.DiagnosticsMarker. A stopped required assessment skips the dependent ones (t.Skip
// with the reason), never the feature's other checks.
func E2E(fs ...Feature) []types.Feature {
	out := make([]types.Feature, 0, len(fs))
	for _, f := range fs {
		fr := &featureRun{f: f}
		b := features.New(f.Name).WithLabel(LabelArea, string(f.Area))
		for _, k := range slices.Sorted(maps.Keys(f.Labels)) {
			b = b.WithLabel(k, f.Labels[k])
		}
		b = b.WithSetup("setup", adaptSetup(fr))
		for _, s := range f.Assess {
			b = b.Assess(s.Name, adaptStep(fr, s))
		}
		out = append(out, b.Feature())
	}
	return out
}

func contextOf(ctx context.Context, t *testing.T) *Context {
	t.Helper()
	c, ok := FromContext(ctx)
	if !ok {
		t.Fatal("no conformance context: TestMain must register conformance.SetupEnv")
	}
	return c
}

// adaptSetup runs the feature's setup on the feature's own test (its t.Cleanup runs after
// the assessments); a failed setup logs the diagnostics.
func adaptSetup(fr *featureRun) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		c := contextOf(ctx, t)
		fr.stoppedBy = ""
		if fr.f.Setup == nil {
			return ctx
		}
		t.Log(c.checkMarker(fr.f, report.SetupStep, ""))
		// Deferred: it also runs when the setup stops with t.Fatal (runtime.Goexit).
		defer func() {
			if t.Failed() {
				t.Log(report.DiagnosticsMarker + "\n" + c.diagnose(ctx))
			}
		}()
		fr.f.Setup(ctx, t, c)
		return ctx
	}
}

func adaptStep(fr *featureRun, s Step) features.Func {
	return func(ctx context.Context, t *testing.T, _ *envconf.Config) context.Context {
		t.Helper()
		c := contextOf(ctx, t)
		t.Log(c.checkMarker(fr.f, s.Name, s.profileOf()))
		res := c.runStep(ctx, fr, s)
		msg := strings.TrimRight(res.message, "\n")
		switch res.status {
		case report.Skipped:
			t.Skip(msg)
		case report.Failed:
			t.Error(msg)
		case report.Warned:
			t.Log(warnLine(msg))
		default:
			if msg != "" {
				t.Log(msg)
			}
		}
		if res.diagnostics != "" {
			t.Log(report.DiagnosticsMarker + "\n" + res.diagnostics)
		}
		return ctx
	}
}
