package suites_test

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/e2e-framework/pkg/env"
	"sigs.k8s.io/e2e-framework/pkg/envconf"

	"github.com/keysync-dev/keysync/suites/conformance"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

var testenv env.Environment

func TestMain(m *testing.M) {
	opts := conformance.Options{Hooks: nodedriver.NewConfig(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	opts.Hooks.FromEnv(os.Getenv)
	flag.StringVar(&opts.LabEnv, "lab-env", "", "lab env file (default $"+conformance.EnvLabEnv+", else <checkout>/_out/lab.env)")
	flag.DurationVar(&opts.SyncTimeout, "sync-timeout", conformance.DefaultSyncTimeout, "how long to wait for the synchronizer (file appears or goes, Event recorded)")
	flag.DurationVar(&opts.P99SyncLatency, "p99-sync-latency", conformance.DefaultP99SyncLatency, "the latency area's bound (recommended) on the p99 time from a key Secret's creation to its file on every node")
	flag.Var(&opts.Profile, "profile", "profile the run is judged by: required (failed recommended checks are logged as warnings) or recommended (both fail; the default)")
	opts.Hooks.RegisterFlags(flag.CommandLine)
	opts.RegisterFlags(flag.CommandLine, os.Getenv)
	if extra := strings.Fields(os.Getenv("KEYSYNC_SUITE_ARGS")); len(extra) > 0 {
		os.Args = append(os.Args, extra...)
	}
	cfg, err := envconf.NewFromFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: failed to parse flags: %v\n", err)
		os.Exit(2)
	}
	// Interrupt-safe (suites/conformance/interrupt.go): Ctrl-C, SIGTERM and the end of
	// -test.timeout remove what the run created before the process ends.
	guard, ctx := conformance.NewGuard(context.Background(), os.Stderr)
	opts.Guard = guard
	timeout := conformance.TestTimeout(flag.CommandLine)
	stop := guard.Watch(timeout, conformance.CleanupMargin(timeout))
	if testenv, err = env.NewWithContext(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: failed to create the test environment: %v\n", err)
		os.Exit(2)
	}
	testenv.Setup(func(ctx context.Context, c *envconf.Config) (context.Context, error) {
		ctx, err := conformance.SetupEnv(opts)(ctx, c)
		if err != nil {
			// Say it plainly on stderr too: no lab is a failure, never a skip.
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		}
		return ctx, err
	})
	testenv.BeforeEachTest(conformance.BeforeEachTest())
	testenv.AfterEachTest(conformance.AfterEachTest())
	testenv.Finish(conformance.FinishEnv())
	code := guard.Finish(ctx, testenv.Run(m))
	stop()
	os.Exit(code)
}

// TestConformance runs every area in suite order (conformance.Areas), one subtest per area
// (-run 'TestConformance/kp'); e2e-framework's --labels, --feature and the like select
// features inside. Each area gets its own run ID and leftover check (BeforeEachTest,
// AfterEachTest).
func TestConformance(t *testing.T) {
	for _, area := range conformance.Areas {
		t.Run(string(area), func(t *testing.T) {
			testenv.Test(t, conformance.E2E(conformance.FeaturesIn(area)...)...)
		})
	}
}
