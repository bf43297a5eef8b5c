package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/fixtures"
	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/ociimage"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/conformance"
	"github.com/keysync-dev/keysync/suites/nodedriver/agentbin"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
)

// initFlags are `keysync conformance init`'s settings.
type initFlags struct {
	kubeconfig, registry, labEnv, out     string
	creds, authFile, certDir              string
	marker, syncerNamespace, syncSubdir   string
	keysRoot, criSocket, fixturesManifest string
	mockkpFrom, agentBinary               string
	tlsVerify                             bool
}

// newInitCommand builds `keysync conformance init`: it turns a kubeconfig and a registry into a
// lab env file for any cluster (KEYSYNC_LAB=cluster).
func newInitCommand(s *cli.Streams) *cobra.Command {
	f := &initFlags{}
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Prepare a conformance run against any cluster: push the fixtures and the node agent image, write the lab env file",
		Long: `Prepares 'keysync conformance' for a cluster that is not one of keysync's labs (its nodes
run CRI-O, the synchronizer under test is deployed): it pushes the fixture images to --registry
(keys are generated into --out), pushes the node agent image (keysync-node-agent FROM scratch;
the suites run it as DaemonSet keysync-node-agent, one pod per node, to pull through CRI-O and
read and audit the keys tree), lists the nodes, and writes the lab env file. Then:

  keysync conformance --lab-env <that file> --junit out.xml

Every node must be able to pull from --registry. Key Protect features need a mockkp the
synchronizer reaches (--mockkp-from a lab env file describing one); without it they are
skipped and say so.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return runInit(c.Context(), s, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "admin kubeconfig of the cluster")
	fl.StringVar(&f.registry, "registry", "", "host:port of a registry every node pulls from (required)")
	fl.BoolVar(&f.tlsVerify, "tls-verify", true, "verify the registry's TLS certificate (false also allows plain HTTP)")
	fl.StringVar(&f.creds, "creds", "", "registry credentials user:password (default: the auth file)")
	fl.StringVar(&f.authFile, "authfile", "", "containers-auth.json for the registry")
	fl.StringVar(&f.certDir, "cert-dir", "", "directory with the registry's CA (ca.crt) and client certificates")
	fl.StringVar(&f.labEnv, "lab-env", filepath.Join("_out", "cluster.env"), "the lab env file to write")
	fl.StringVar(&f.out, "out", filepath.Join("_out", "cluster"), "directory for the fixtures' keys and manifest")
	fl.StringVar(&f.fixturesManifest, "fixtures-manifest", "", "use fixtures pushed before (their manifest.json) instead of pushing new ones")
	fl.StringVar(&f.marker, "marker", "", "prebuilt fixture marker program (default: build it from the keysync checkout)")
	fl.StringVar(&f.syncerNamespace, "syncer-namespace", conformance.DefaultNamespace, "namespace the synchronizer watches")
	fl.StringVar(&f.syncSubdir, "sync-subdir", "synced", "the synchronizer's directory under the keys tree")
	fl.StringVar(&f.mockkpFrom, "mockkp-from", "", "copy the mockkp settings (MOCKKP_*, KP_*) from this lab env file (a lab whose mockkp the cluster reaches)")
	fl.StringVar(&f.agentBinary, "agent-binary", "", "static linux/amd64 keysync-node-agent for the node agent image (default: the one beside this keysync, else built from the checkout)")
	fl.StringVar(&f.keysRoot, "keys-root", cluster.DefaultKeysRoot, "CRI-O's decryption_keys_path on the nodes")
	fl.StringVar(&f.criSocket, "cri-socket", cluster.DefaultCRISocket, "CRI-O's socket on the nodes")
	return cmd
}

func (f *initFlags) registryOptions(out string) fixtures.Options {
	return fixtures.Options{Out: out, Registry: f.registry, InsecureSkipTLSVerify: !f.tlsVerify,
		Credentials: f.creds, AuthFile: f.authFile, CertDir: f.certDir}
}

func runInit(ctx context.Context, s *cli.Streams, f *initFlags) error {
	if f.kubeconfig == "" {
		return errors.New("no --kubeconfig (and $KUBECONFIG is empty)")
	}
	if f.registry == "" {
		return errors.New("--registry is required: a registry every node of the cluster pulls from")
	}
	var err error
	for _, p := range []*string{&f.kubeconfig, &f.labEnv, &f.out} {
		if *p, err = filepath.Abs(*p); err != nil {
			return fmt.Errorf("failed to resolve %s: %w", *p, err)
		}
	}
	env := lab.Env{Lab: lab.KindCluster, Kubeconfig: f.kubeconfig, Registry: f.registry, SyncerNamespace: f.syncerNamespace,
		SyncSubdir: f.syncSubdir, KeysRoot: f.keysRoot, CRIEndpoint: strings.TrimPrefix(f.criSocket, "unix://")}
	if f.mockkpFrom != "" {
		from, err := lab.LoadEnv(f.mockkpFrom)
		if err != nil {
			return fmt.Errorf("--mockkp-from: %w", err)
		}
		env.MockKPURL, env.MockKPTokenURL, env.MockKPAdminURL = from.MockKPURL, from.MockKPTokenURL, from.MockKPAdminURL
		env.MockKPClusterURL, env.MockKPClusterTokenURL = from.MockKPClusterURL, from.MockKPClusterTokenURL
		env.KPInstanceID, env.KPAPIKey, env.KPRootKeyID = from.KPInstanceID, from.KPAPIKey, from.KPRootKeyID
		if env.MockKPURL == "" {
			return fmt.Errorf("--mockkp-from %s describes no mockkp", f.mockkpFrom)
		}
	}
	steps := []lab.Step{
		{Name: "Reading the cluster", Run: func(ctx context.Context) (string, error) {
			cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
			if err != nil {
				return "", fmt.Errorf("failed to load kubeconfig %s: %w", f.kubeconfig, err)
			}
			cs, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return "", fmt.Errorf("failed to create Kubernetes client: %w", err)
			}
			if _, err := cs.CoreV1().Namespaces().Get(ctx, f.syncerNamespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				return "", fmt.Errorf("namespace %s does not exist: deploy the synchronizer under test first (or pass --syncer-namespace)", f.syncerNamespace)
			} else if err != nil {
				return "", fmt.Errorf("failed to reach the cluster: %w", err)
			}
			nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err != nil {
				return "", fmt.Errorf("failed to list nodes: %w", err)
			}
			var unfit []string
			for _, n := range nodes.Items {
				env.Nodes = append(env.Nodes, n.Name)
				info := n.Status.NodeInfo
				if !strings.HasPrefix(info.ContainerRuntimeVersion, "cri-o://") || info.Architecture != "amd64" {
					unfit = append(unfit, fmt.Sprintf("%s (%s, %s)", n.Name, info.ContainerRuntimeVersion, info.Architecture))
				}
			}
			if len(unfit) > 0 {
				return "", fmt.Errorf("the suites need CRI-O nodes on amd64 (the node agent image is linux/amd64); these are not: %s", strings.Join(unfit, ", "))
			}
			slices.Sort(env.Nodes)
			if len(env.Nodes) == 0 {
				return "", errors.New("the cluster has no nodes")
			}
			return fmt.Sprintf("%d nodes", len(env.Nodes)), nil
		}},
		{Name: "Pushing the fixtures", Run: func(ctx context.Context) (string, error) {
			if f.fixturesManifest != "" {
				if env.FixturesManifest, err = filepath.Abs(f.fixturesManifest); err != nil {
					return "", fmt.Errorf("failed to resolve --fixtures-manifest: %w", err)
				}
				_, err := conformance.LoadFixtures(env.FixturesManifest)
				return "reused", err
			}
			o := f.registryOptions(filepath.Join(f.out, "fixtures"))
			o.MarkerBinary, o.Logger = f.marker, s.Logger
			m, err := fixtures.Push(ctx, o)
			if err != nil {
				hint := ""
				if f.marker == "" {
					hint = " (without --marker the marker program is built from the keysync checkout: run inside it)"
				}
				return "", fmt.Errorf("failed to push the fixtures%s: %w", hint, err)
			}
			env.FixturesManifest = filepath.Join(o.Out, "manifest.json")
			return fmt.Sprintf("%d images", len(m.Variants)), nil
		}},
		{Name: "Pushing the node agent image", Run: func(ctx context.Context) (string, error) {
			bin, from, err := agentbin.Load(ctx, f.agentBinary)
			if err != nil {
				return "", err
			}
			img, err := cluster.AgentImage(bin)
			if err != nil {
				return "", err
			}
			tag, err := cluster.TagOf(img)
			if err != nil {
				return "", err
			}
			layout := filepath.Join(f.out, "node-agent")
			if err := os.RemoveAll(layout); err != nil {
				return "", fmt.Errorf("failed to clean %s: %w", layout, err)
			}
			if err := ociimage.WriteLayout(layout, []string{tag}, map[string]ociimage.Image{tag: img}); err != nil {
				return "", err
			}
			ref := f.registry + "/" + cluster.AgentRepo + ":" + tag
			if _, err := fixtures.CopyImage(ctx, "oci:"+layout+":"+tag, ref, f.registryOptions(f.out)); err != nil {
				return "", err
			}
			env.NodeAgentImage = ref
			return fmt.Sprintf("%s (agent %s)", ref, from), nil
		}},
		{Name: "Writing the lab env file", Run: func(context.Context) (string, error) {
			if err := lab.WriteEnv(f.labEnv, env); err != nil {
				return "", err
			}
			return f.labEnv, nil
		}},
	}
	if _, err := lab.RunSteps(ctx, s.ErrOut, false, steps); err != nil {
		return err
	}
	fmt.Fprintf(s.Out, "next: keysync conformance --lab-env %s --junit junit.xml\n", f.labEnv)
	return nil
}
