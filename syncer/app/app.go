// Package app is the keysync-syncer program: flags, logging, the Kubernetes client, the
// metrics and probe servers around syncer/controller. cmd/keysync-syncer only calls Main.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/keysync-dev/keysync/syncer/controller"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	"github.com/keysync-dev/keysync/syncer/metrics"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config is the program's configuration.
type Config struct {
	KeysDir       string
	StagingDir    string
	Namespace     string
	NodeName      string
	Kubeconfig    string
	MetricsAddr   string
	ProbeAddr     string
	Owner         string
	LogLevel      string
	ResyncPeriod  time.Duration
	UnwrapTimeout time.Duration
	RetryBase     time.Duration
	RetryMax      time.Duration
	// AllowInsecureKP accepts a keyprotect-config with http URLs or a token host that is not
	// IAM's (labs with mockkp); every such config gets a Warning Event.
	AllowInsecureKP   bool
	MaxFilesPerSecret int
	MaxFiles          int
	// PrepareFor, when set ("uid:gid"), prepares the keys and staging directories for a
	// synchronizer running as that user and exits (the DaemonSet's init container, as root).
	PrepareFor string
	// AfterStage and OnStep are test hooks (no flag): see keyfile.Options.
	AfterStage func(staged, final string)
	OnStep     func(step keyfile.Step, final string)
	// Listening, when set, receives the bound metrics and probe addresses (tests use ":0").
	Listening func(metricsAddr, probeAddr string)
}

// ParseFlags reads args (without the program name); env POD_NAMESPACE and NODE_NAME provide
// the defaults of --namespace and --node-name.
func ParseFlags(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("keysync-syncer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	ns := getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "image-key-synchronizer"
	}
	fs.StringVar(&c.KeysDir, "keys-dir", "/etc/crio/keys/synced", "directory the key files are written to")
	fs.StringVar(&c.StagingDir, "staging-dir", "", "directory files are staged in before the rename: same filesystem as --keys-dir, outside CRI-O's decryption_keys_path (default <keys-dir>/../../.keysync-staging)")
	fs.StringVar(&c.Namespace, "namespace", ns, "namespace of the key Secrets (env POD_NAMESPACE)")
	fs.StringVar(&c.NodeName, "node-name", getenv("NODE_NAME"), "this node's name, used in Events (env NODE_NAME)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file (out of cluster); in-cluster config when empty")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":9090", "address of the Prometheus /metrics endpoint (empty: off)")
	fs.StringVar(&c.ProbeAddr, "probe-addr", ":8081", "address of /healthz and /readyz (empty: off)")
	fs.StringVar(&c.Owner, "owner", "", "numeric uid:gid owning the key files (default: the process's)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&c.ResyncPeriod, "resync-period", 10*time.Minute, "informer resync: every Secret is checked again (never unwrapped again)")
	fs.DurationVar(&c.UnwrapTimeout, "unwrap-timeout", 30*time.Second, "limit of one Key Protect unwrap attempt")
	fs.DurationVar(&c.RetryBase, "retry-base-delay", time.Second, "first backoff delay after a transient failure")
	fs.DurationVar(&c.RetryMax, "retry-max-delay", 5*time.Minute, "largest backoff delay (before jitter; a Retry-After of Key Protect or IAM is honoured beyond it, up to 1h)")
	fs.BoolVar(&c.AllowInsecureKP, "allow-insecure-kp", false, "accept a keyprotect-config with http URLs or a token-url host that is not IAM's or Key Protect's (labs with a mock Key Protect only; each such config gets a Warning Event)")
	fs.IntVar(&c.MaxFilesPerSecret, "max-files-per-secret", controller.DefaultMaxFilesPerSecret, "a key Secret with more valid keys gets no files (Event KeyRejected)")
	fs.IntVar(&c.MaxFiles, "max-files", controller.DefaultMaxFiles, "most key files in the keys tree: a Secret that would pass it gets no new files (Event KeyRejected)")
	fs.StringVar(&c.PrepareFor, "prepare-for", "", "uid:gid: create --keys-dir and --staging-dir (0700) owned by that user, hand over the files in them, and exit (init container, as root)")
	addMutantFlag(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, fmt.Errorf("failed to parse flags: %w", err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.MaxFilesPerSecret < 1 || c.MaxFiles < 1 {
		return Config{}, errors.New("--max-files-per-secret and --max-files must be at least 1")
	}
	return c, nil
}

// Main runs the program and returns its exit code.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	c, err := ParseFlags(args, os.Getenv)
	if err != nil {
		fmt.Fprintln(stderr, "keysync-syncer:", err)
		return 2
	}
	if err := Run(ctx, c, stderr); err != nil {
		fmt.Fprintln(stderr, "keysync-syncer:", err)
		return 1
	}
	return 0
}

// Run runs the synchronizer until ctx ends. Logs go to logOut as JSON.
func Run(ctx context.Context, c Config, logOut io.Writer) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("invalid --log-level: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	owner, err := keyfile.ParseOwner(c.Owner)
	if err != nil {
		return err
	}
	if c.PrepareFor != "" {
		return prepare(c, log)
	}
	// The cluster configuration first: a bad one must not leave directories behind on the node.
	restCfg, err := restConfig(c.Kubeconfig)
	if err != nil {
		return err
	}
	store, err := keyfile.Open(keyfile.Options{Dir: c.KeysDir, StagingDir: c.StagingDir, Owner: owner,
		AfterStage: c.AfterStage, OnStep: c.OnStep})
	if err != nil {
		return fmt.Errorf("failed to open keys directory: %w", err)
	}
	defer store.Close()
	for _, h := range store.Healed() {
		log.Warn("repaired the ownership state", "what", h)
	}
	restCfg.UserAgent = "keysync-syncer"
	// Protobuf: the smaller and cheaper encoding for the initial list of every Secret.
	restCfg.ContentType = "application/vnd.kubernetes.protobuf"
	restCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("failed to create Kubernetes client: %w", err)
	}
	m := metrics.New()
	ctrl, err := controller.New(controller.Options{
		Client: client,
		Reconciler: controller.ReconcilerOptions{Namespace: c.Namespace, NodeName: c.NodeName, Store: store,
			Metrics: m, Logger: log, UnwrapTimeout: c.UnwrapTimeout, AllowInsecureKP: c.AllowInsecureKP,
			MaxFilesPerSecret: c.MaxFilesPerSecret, MaxFiles: c.MaxFiles},
		ResyncPeriod: c.ResyncPeriod,
		Retry:        controller.RetryPolicy{Base: c.RetryBase, Max: c.RetryMax},
		// The first list of every Secret is the process's one burst of garbage: hand it back
		// so that the steady-state RSS reflects the cache, not the peak.
		AfterFullSync: debug.FreeOSMemory,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 3)
	var maddr, paddr string
	if c.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		if maddr, err = serve(ctx, c.MetricsAddr, mux, errc); err != nil {
			return err
		}
	}
	if c.ProbeAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !ctrl.Ready() {
				http.Error(w, "keys tree not in sync yet (first full sync pending, or writing key files fails)", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		if paddr, err = serve(ctx, c.ProbeAddr, mux, errc); err != nil {
			return err
		}
	}
	if c.Listening != nil {
		c.Listening(maddr, paddr)
	}
	log.Info("starting", "namespace", c.Namespace, "node", c.NodeName, "keysDir", store.Dir(),
		"stagingDir", store.StagingDir(), "ownedFiles", store.Len(), "uid", os.Getuid())
	if c.AllowInsecureKP {
		log.Warn("--allow-insecure-kp: a keyprotect-config with http URLs or a foreign token host is accepted (labs only)")
	}
	go func() { errc <- ctrl.Run(ctx) }()
	err = <-errc
	cancel()
	if err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// prepare readies the directories for an unprivileged synchronizer and reports what it did.
func prepare(c Config, log *slog.Logger) error {
	owner, err := keyfile.ParseOwner(c.PrepareFor)
	if err != nil {
		return fmt.Errorf("invalid --prepare-for: %w", err)
	}
	staging := c.StagingDir
	if staging == "" {
		staging = keyfile.DefaultStagingDir(c.KeysDir)
	}
	notes, err := keyfile.Prepare(c.KeysDir, staging, *owner)
	for _, n := range notes {
		log.Info("prepared", "what", n)
	}
	if err != nil {
		return fmt.Errorf("failed to prepare directories: %w", err)
	}
	log.Info("directories ready", "keysDir", c.KeysDir, "stagingDir", staging, "owner", c.PrepareFor)
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("failed to load in-cluster config (use --kubeconfig out of cluster): %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("failed to load kubeconfig: %w", err)
	}
	return c, nil
}

func serve(ctx context.Context, addr string, h http.Handler, errc chan<- error) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("failed to listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("failed to serve %s: %w", addr, err)
		}
	}()
	return ln.Addr().String(), nil
}
