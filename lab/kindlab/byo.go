package kindlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/keysync-dev/keysync/lab"
)

// ReferenceSynchronizer is how the env file names the default synchronizer (SyncerStep).
const ReferenceSynchronizer = "reference keysync-syncer"

// SynchronizerNone: the lab deploys no synchronizer; you deploy yours after lab up.
const SynchronizerNone = "none"

// ForeignSyncerStep applies the kustomize directory dir (a synchronizer other than the
// reference; it may use the lab registry, which is up by then) and records it as the
// synchronizer under test.
func ForeignSyncerStep(p Parts, dir string) func(*Lab) lab.Step {
	return func(l *Lab) lab.Step {
		return lab.Step{Name: "Deploying the synchronizer under test", Run: func(ctx context.Context) (string, error) {
			if p.Kubectl == "" {
				return "", errors.New("--kubectl is required to deploy the synchronizer (hack/build-k8s.sh kubectl prints its directory)")
			}
			abs, err := filepath.Abs(dir)
			if err != nil {
				return "", fmt.Errorf("failed to resolve %s: %w", dir, err)
			}
			if _, err := os.Stat(filepath.Join(abs, "kustomization.yaml")); err != nil {
				return "", fmt.Errorf("--synchronizer %s is not a kustomize directory: %w", dir, err)
			}
			// Applied through an overlay of the lab's: the public names' hostAliases in every
			// DaemonSet and the lab CA's ConfigMap beside it (lab/kindlab/publicnames.go).
			overlay := filepath.Join(l.Opts.OutDir, "synchronizer-overlay")
			if err := os.RemoveAll(overlay); err != nil {
				return "", fmt.Errorf("failed to clean %s: %w", overlay, err)
			}
			if err := os.MkdirAll(overlay, 0o755); err != nil {
				return "", fmt.Errorf("failed to create %s: %w", overlay, err)
			}
			target := abs
			mockkpIP, caSum, err := l.publicNamesFor(ctx, overlay)
			if err != nil {
				return "", err
			}
			if mockkpIP != "" {
				rel, err := filepath.Rel(overlay, abs)
				if err != nil {
					return "", fmt.Errorf("failed to locate %s: %w", abs, err)
				}
				if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(foreignOverlay(rel, mockkpIP, caSum)), 0o644); err != nil {
					return "", fmt.Errorf("failed to write the synchronizer overlay: %w", err)
				}
				target = overlay
			}
			cmd := exec.CommandContext(ctx, p.Kubectl, "--kubeconfig", l.KubeconfigPath(), "apply", "-k", target)
			if b, err := cmd.CombinedOutput(); err != nil {
				return "", fmt.Errorf("failed to apply %s: %w: %s", abs, err, lab.LastLines(b, 20))
			}
			l.Env.Synchronizer = abs
			if mockkpIP != "" {
				return abs + " (+ hostAliases for IAM's and Key Protect's names, ConfigMap " + LabCAConfigMap + ")", nil
			}
			return abs, nil
		}}
	}
}

// NoSyncerStep records that the lab deploys no synchronizer.
func NoSyncerStep() func(*Lab) lab.Step {
	return func(l *Lab) lab.Step {
		return lab.Step{Name: "Synchronizer under test", Run: func(context.Context) (string, error) {
			l.Env.Synchronizer = SynchronizerNone
			return "none: deploy yours now (namespace " + SyncerNamespace + ")", nil
		}}
	}
}
