package kindlab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/fixtures"
	"github.com/keysync-dev/keysync/fixtures/manifest"
	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/lab/labconfig"
	"github.com/keysync-dev/keysync/mockkp"
)

// Parts are the checkout's pieces the addon steps build and run.
type Parts struct {
	// Root is the checkout (cmd/mockkp, cmd/keysync-syncer, syncer/deploy, syncer/Dockerfile).
	Root string
	// Kubectl is a kubectl binary (hack/build-k8s.sh builds one).
	Kubectl string
}

// buildStatic builds a static binary of pkg (relative to root) into dir.
func buildStatic(ctx context.Context, root, pkg, out string) error {
	if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
		return fmt.Errorf("failed to find %s in the checkout: %w", pkg, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "./"+pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("failed to build %s: %w: %s", pkg, err, lab.LastLines(b, 20))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// FixturesStep pushes the fixtures to the lab registry through its host port (package
// fixtures, in this process, with the lab's credentials); the manifest's references name
// RegistryPullAddr, the registry's network alias the nodes pull from with credentials.
func FixturesStep(p Parts) func(*Lab) lab.Step {
	return func(l *Lab) lab.Step {
		return lab.Step{Name: "Pushing the fixtures", Run: func(ctx context.Context) (string, error) {
			out := filepath.Join(l.Opts.OutDir, "fixtures")
			m, err := fixtures.Push(ctx, fixtures.Options{Out: out, Registry: RegistryHostAddr, AuthFile: l.RegistryAuthFile(),
				InsecureSkipTLSVerify: true, SourceDir: p.Root, Logger: l.Opts.Logger})
			if err != nil {
				return "", fmt.Errorf("failed to push fixtures: %w", err)
			}
			l.Env.FixturesManifest = manifest.Path(out)
			if err := pullRefs(l.Env.FixturesManifest); err != nil {
				return "", fmt.Errorf("failed to point the fixtures manifest at %s: %w", RegistryPullAddr, err)
			}
			if _, err := os.Stat(l.Env.FixturesManifest); err != nil {
				return "", fmt.Errorf("fixtures push wrote no manifest: %w", err)
			}
			return fmt.Sprintf("%d images to %s", len(m.Variants), RegistryHostAddr), nil
		}}
	}
}

// MockKPStep runs mockkp (FROM scratch, the static cmd/mockkp) on the kind network with a seed
// made for this lab: one instance, one API key, one root key.
func MockKPStep(p Parts) func(*Lab) lab.Step {
	return func(l *Lab) lab.Step {
		return lab.Step{Name: "Starting mockkp", Run: func(ctx context.Context) (string, error) {
			seedPath := filepath.Join(l.Opts.OutDir, "mockkp-seed.json")
			note := "reused"
			ca, newCA, err := l.ensureLabCA()
			if err != nil {
				return "", err
			}
			ok, err := containerExists(ctx, MockKPContainer)
			if err != nil {
				return "", err
			}
			binds := []string{seedPath + ":/seed.json:ro", ca.Dir + ":/tls:ro"}
			if ok {
				// Never made anew under a running cluster: its Secrets are encrypted with the
				// KMS root key in this mockkp's state. One from another checkout (its seed and
				// CA) or from before the public names (no TLS listener) means a new lab.
				if err := checkOwnBinds(ctx, MockKPContainer, binds); err != nil {
					return "", err
				}
				if serves, err := mockkpServesPublicNames(ctx); err != nil {
					return "", err
				} else if !serves {
					return "", fmt.Errorf("%w: container %s was made before the lab served IAM's and Key Protect's public names (make lab-down, then make lab-up)",
						ErrForeignContainer, MockKPContainer)
				}
			}
			if !ok {
				note = ""
				bin := filepath.Join(l.Opts.OutDir, "bin", "mockkp")
				if err := buildStatic(ctx, p.Root, "cmd/mockkp", bin); err != nil {
					return "", err
				}
				img, err := hostImage(map[string]string{"/mockkp": bin}, nil, "/mockkp")
				if err != nil {
					return "", err
				}
				tag, _, err := img.EnsureDocker(ctx, "keysync/mockkp")
				if err != nil {
					return "", err
				}
				data, err := labconfig.MockKPSeedJSON(labconfig.MockKPIdentity{
					InstanceID: "lab-" + randomHex(8),
					APIKey:     "lab-apikey-" + randomHex(16),
					RootKeyID:  "lab-root-" + randomHex(8),
					// The KMS plug-in's root key (KMSStep).
					KMSRootKeyID: "lab-kms-root-" + randomHex(8),
				})
				if err != nil {
					return "", err
				}
				if err := atomicfile.Write(seedPath, data, 0o600); err != nil {
					return "", fmt.Errorf("failed to write mockkp seed: %w", err)
				}
				svc := service{Name: MockKPContainer, Image: tag,
					Ports: map[string]string{"8080/tcp": MockKPHostAddr, "8081/tcp": MockKPAdminAddr},
					Binds: binds,
					Cmd:   append([]string{"--addr", ":8080", "--admin-addr", ":8081", "--seed", "/seed.json"}, mockkpTLSArgs()...),
					Ready: "/healthz"}
				if err := svc.start(ctx, l.Opts.Logger); err != nil {
					return "", fmt.Errorf("failed to start mockkp: %w", err)
				}
			} else if _, err := docker(ctx, nil, "start", MockKPContainer); err != nil {
				return "", err
			} else if newCA {
				// mockkp reads its certificate once, at start, and a restart would lose its
				// keys (state in memory): a new CA under a running mockkp means a new lab.
				return "", fmt.Errorf("%w: the lab CA in %s was made anew while %s runs with the old one (make lab-down, then make lab-up)",
					ErrForeignContainer, ca.Dir, MockKPContainer)
			}
			seed, err := mockkp.LoadSeed(seedPath)
			var id labconfig.MockKPIdentity
			if err == nil {
				id, err = labconfig.Identity(seed)
			}
			if err != nil {
				return "", fmt.Errorf("failed to read mockkp seed %s (remove the %s container to recreate it): %w", seedPath, MockKPContainer, err)
			}
			ip, err := containerIP(ctx, MockKPContainer, KindNetwork)
			if err != nil {
				return "", err
			}
			l.Env.MockKPURL = "http://" + MockKPHostAddr
			l.Env.MockKPTokenURL = l.Env.MockKPURL + "/identity/token"
			l.Env.MockKPAdminURL = "http://" + MockKPAdminAddr
			l.Env.MockKPClusterURL = "http://" + ip + ":8080"
			l.Env.MockKPClusterTokenURL = l.Env.MockKPClusterURL + "/identity/token"
			l.Env.KPInstanceID = id.InstanceID
			l.Env.KPAPIKey = id.APIKey
			l.Env.KPRootKeyID = id.RootKeyID
			l.Env.KMSRootKeyID = id.KMSRootKeyID
			l.Env.KPPublicURL, l.Env.KPCAFile = labconfig.KPPublicURL, ca.CA
			if l.Env.Extra == nil {
				l.Env.Extra = map[string]string{}
			}
			// Where the public names must resolve, for a synchronizer deployed by hand (none).
			l.Env.Extra["KP_PUBLIC_ADDRESS"] = ip
			// kp-public-names comes with a synchronizer the lab maps the names for
			// (publicNamesFor), not with mockkp alone.
			if !l.Env.Has(lab.CapMockKP) {
				l.Env.Capabilities = append(l.Env.Capabilities, lab.CapMockKP)
			}
			if err := waitHTTP(ctx, l.Env.MockKPAdminURL+"/healthz", 30*time.Second); err != nil {
				// The admin API's health path is mockkp's; a 404 still proves it listens.
				if !strings.Contains(err.Error(), "404") {
					return "", fmt.Errorf("mockkp did not answer: %w", err)
				}
			}
			if note == "" {
				note = l.Env.MockKPClusterURL + " in the cluster"
			}
			return note, nil
		}}
	}
}

// SyncerImageName is the image name syncer/deploy's manifests use (kustomize images: name).
const SyncerImageName = "keysync-syncer"

// syncerRepo is the synchronizer's repository in the lab registry.
const syncerRepo = "keysync/syncer"

// SyncerStep builds the synchronizer image (syncer/Dockerfile, the static cmd/keysync-syncer),
// pushes it to the lab registry and applies syncer/deploy with that image.
func SyncerStep(p Parts) func(*Lab) lab.Step {
	return func(l *Lab) lab.Step {
		return lab.Step{Name: "Deploying the synchronizer addon", Run: func(ctx context.Context) (string, error) {
			if p.Kubectl == "" {
				return "", errors.New("--kubectl is required to deploy the synchronizer (hack/build-k8s.sh kubectl prints its directory)")
			}
			ctxDir := filepath.Join(l.Opts.OutDir, "syncer-image")
			if err := os.RemoveAll(ctxDir); err != nil {
				return "", fmt.Errorf("failed to clean %s: %w", ctxDir, err)
			}
			if err := os.MkdirAll(ctxDir, 0o755); err != nil {
				return "", fmt.Errorf("failed to create %s: %w", ctxDir, err)
			}
			if err := buildStatic(ctx, p.Root, "cmd/keysync-syncer", filepath.Join(ctxDir, "keysync-syncer")); err != nil {
				return "", err
			}
			df, err := os.ReadFile(filepath.Join(p.Root, "syncer", "Dockerfile"))
			if err != nil {
				return "", fmt.Errorf("failed to read syncer/Dockerfile: %w", err)
			}
			if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), df, 0o644); err != nil {
				return "", fmt.Errorf("failed to stage syncer/Dockerfile: %w", err)
			}
			local := "keysync/syncer:lab"
			if _, err := docker(ctx, nil, "build", "-q", "-t", local, ctxDir); err != nil {
				return "", err
			}
			id, err := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", local)
			if err != nil {
				return "", err
			}
			newTag := strings.TrimPrefix(id, "sha256:")[:12]
			ref := RegistryHostAddr + "/" + syncerRepo + ":" + newTag
			if _, err := docker(ctx, nil, "tag", local, ref); err != nil {
				return "", err
			}
			if _, err := docker(ctx, nil, "--config", l.DockerConfigDir(), "push", ref); err != nil {
				return "", err
			}
			overlay := filepath.Join(l.Opts.OutDir, "syncer-overlay")
			if err := os.MkdirAll(overlay, 0o755); err != nil {
				return "", fmt.Errorf("failed to create %s: %w", overlay, err)
			}
			rel, err := filepath.Rel(overlay, filepath.Join(p.Root, "syncer", "deploy"))
			if err != nil {
				return "", fmt.Errorf("failed to locate syncer/deploy: %w", err)
			}
			mockkpIP, caSum, err := l.publicNamesFor(ctx, overlay)
			if err != nil {
				return "", err
			}
			k := referenceOverlay(rel, RegistryHostAddr+"/"+syncerRepo, newTag, mockkpIP, caSum)
			if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(k), 0o644); err != nil {
				return "", fmt.Errorf("failed to write the syncer overlay: %w", err)
			}
			cmd := exec.CommandContext(ctx, p.Kubectl, "--kubeconfig", l.KubeconfigPath(), "apply", "-k", overlay)
			if b, err := cmd.CombinedOutput(); err != nil {
				return "", fmt.Errorf("failed to apply the syncer addon: %w: %s", err, lab.LastLines(b, 20))
			}
			l.Env.Synchronizer = ReferenceSynchronizer
			return ref, nil
		}}
	}
}

// WaitSyncerStep waits until the synchronizer's DaemonSets are rolled out: every one's
// current spec observed and its pods updated, ready and available on every node it
// schedules to, one of them on every node. Applying a changed synchronizer over a running one
// leaves the old pods ready for a while; they are not the synchronizer under test.
func WaitSyncerStep(p Parts, timeout time.Duration) func(*Lab) lab.Step {
	return func(l *Lab) lab.Step {
		return lab.Step{Name: "Waiting for one synchronizer pod per node", Run: func(ctx context.Context) (string, error) {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			var last string
			for {
				cmd := exec.CommandContext(ctx, p.Kubectl, "--kubeconfig", l.KubeconfigPath(), "-n", SyncerNamespace,
					"get", "daemonsets", "-o", "jsonpath="+daemonSetStatusJSONPath)
				var out bytes.Buffer
				cmd.Stdout = &out
				if err := cmd.Run(); err == nil {
					done, state := rolledOut(out.String(), len(l.Env.Nodes))
					if done {
						return state, nil
					}
					last = state
				}
				select {
				case <-ctx.Done():
					return "", fmt.Errorf("synchronizer not rolled out on %d nodes within %s: %s", len(l.Env.Nodes), timeout, last)
				case <-time.After(time.Second):
				}
			}
		}}
	}
}

// daemonSetStatusJSONPath prints one line per DaemonSet, fields separated by "|" (a status
// field not set yet prints empty): name, generation, observed generation, desired, updated,
// ready, available.
const daemonSetStatusJSONPath = `{range .items[*]}{.metadata.name}|{.metadata.generation}|{.status.observedGeneration}|` +
	`{.status.desiredNumberScheduled}|{.status.updatedNumberScheduled}|{.status.numberReady}|{.status.numberAvailable}{"\n"}{end}`

// rolledOut reads daemonSetStatusJSONPath's output: done when there is a DaemonSet, each one
// has observed its generation and has all its desired pods updated, ready and available, and
// one of them runs on all nodes. state describes it ("name ready/desired" each, or what is
// missing).
func rolledOut(status string, nodes int) (done bool, state string) {
	var parts []string
	allDone, onEveryNode := true, false
	for _, line := range strings.Split(strings.TrimSpace(status), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Split(strings.TrimSpace(line), "|")
		n := make([]int, 6)
		for i := range n {
			if i+1 < len(f) {
				n[i], _ = strconv.Atoi(f[i+1]) // a status field not set yet reads as 0
			}
		}
		gen, observed, desired, updated, ready, available := n[0], n[1], n[2], n[3], n[4], n[5]
		ok := observed >= gen && gen > 0 && desired > 0 && updated == desired && ready == desired && available == desired
		allDone = allDone && ok
		onEveryNode = onEveryNode || (ok && desired == nodes)
		desc := fmt.Sprintf("%s %d/%d", f[0], ready, desired)
		if updated != desired || observed < gen {
			desc += fmt.Sprintf(" (%d/%d updated, generation %d/%d observed)", updated, desired, observed, gen)
		}
		parts = append(parts, desc)
	}
	if len(parts) == 0 {
		return false, "no DaemonSet in " + SyncerNamespace
	}
	return allDone && onEveryNode, strings.Join(parts, ", ")
}
