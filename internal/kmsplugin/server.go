// Package kmsplugin is keysync's KMS v2 plug-in for kube-apiserver: a gRPC server (k8s.io/kms's
// pkg/service) on a unix socket that wraps and unwraps kube-apiserver's DEKs with an IBM Key
// Protect root key (CRK) through the official keyprotect-go-client (internal/kpkey), configured
// by the KMS runbook's kmsplugin-config.yaml (see Load), with liveness and readiness on a
// loopback health port. cmd/keysync-kms-plugin only calls Main.
package kmsplugin

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"google.golang.org/grpc"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"
)

// Hooks are test hooks (no flag).
type Hooks struct {
	// Listening receives the health server's address once both servers listen.
	Listening func(healthAddr string)
}

// Main runs the plug-in and returns its exit code: 2 for a bad configuration, 1 when serving
// fails, 0 after ctx ends.
func Main(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	c, err := Load(args, getenv)
	if errors.Is(err, ErrHelp) {
		fmt.Fprint(stderr, Usage())
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "keysync-kms-plugin:", err)
		return 2
	}
	if err := Run(ctx, c, stderr, Hooks{}); err != nil {
		fmt.Fprintln(stderr, "keysync-kms-plugin:", err)
		return 1
	}
	return 0
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
	}
	return l, nil
}

func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// transport is the official client's default transport, trusting caFile's CAs when set.
func transport(caFile string) (http.RoundTripper, error) {
	t := kp.DefaultTransport()
	if caFile == "" {
		return t, nil
	}
	pool, err := loadCAFile(caFile)
	if err != nil {
		return nil, err
	}
	ht, ok := t.(*http.Transport)
	if !ok {
		return nil, errors.New("the Key Protect client's default transport is not an *http.Transport")
	}
	ht.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return ht, nil
}

// Run serves until ctx ends: the gRPC server on c.SocketPath (a stale socket there is
// replaced, the new one is mode 0600) and the health server on 127.0.0.1:HealthzPort
// (HealthzPath and /livez: the gRPC server runs; /readyz: Key Protect answers and the root key
// is active). Logs go to logOut as JSON.
func Run(ctx context.Context, c Config, logOut io.Writer, hooks Hooks) error {
	if err := c.Validate(); err != nil {
		return err
	}
	level, _ := parseLevel(c.LogLevel)
	log := slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: level}))
	for _, w := range c.Warnings {
		log.Warn(w)
	}
	if c.AllowInsecureKP {
		if err := c.KP().CheckEndpoints(); err != nil {
			log.Warn("--allow-insecure-kp: using an endpoint the policy refuses (labs only)", "reason", runbookNames(err))
		}
	}
	kpT, err := transport(c.KPCAFile)
	if err != nil {
		return fmt.Errorf("failed to set up KP_CONFIG.KP_CA_FILE: %w", err)
	}
	tokT, err := transport(c.TokenCAFile)
	if err != nil {
		return fmt.Errorf("failed to set up SERVER_CONFIG.TOKEN_URL_CA_FILE: %w", err)
	}
	svc, err := NewService(ServiceOptions{KP: c.KP(), CRKID: c.CRKID, KPTransport: kpT, TokenTransport: tokT,
		MaxRetries: c.MaxRetries, KeyCheckInterval: c.KeyCheckInterval, Logger: log})
	if err != nil {
		return err
	}

	sock, err := listenUnix(c.SocketPath)
	if err != nil {
		return err
	}
	health, err := net.Listen("tcp", net.JoinHostPort(cmp.Or(c.HealthzHost, DefaultHealthzHost), strconv.Itoa(c.HealthzPort)))
	if err != nil {
		sock.Close()
		return fmt.Errorf("failed to listen on the health port: %w", err)
	}
	// pkg/service's GRPCService is the KMS v2 server; its ListenAndServe is not used because it
	// neither replaces a stale socket nor can be stopped before it has listened.
	gs := grpc.NewServer(grpc.ConnectionTimeout(10 * time.Second))
	kmsapi.RegisterKeyManagementServiceServer(gs, service.NewGRPCService(c.SocketPath, 10*time.Second, svc))
	var serving atomic.Bool
	hs := &http.Server{Handler: healthMux(c.HealthzPath, &serving, svc), ReadHeaderTimeout: 5 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- fmt.Errorf("gRPC server stopped: %w", gs.Serve(sock)) }()
	go func() { errc <- fmt.Errorf("health server stopped: %w", hs.Serve(health)) }()
	serving.Store(true)
	log.Info("serving", "socket", c.SocketPath, "health", health.Addr().String(), "crk", c.CRKID,
		"kp_url", c.KPURL, "token_url", c.KP().TokenEndpoint(), "instance_id", c.InstanceID, "max_retries", c.MaxRetries,
		"config_file", c.ConfigFile, "api_key", "(set)")
	if hooks.Listening != nil {
		hooks.Listening(health.Addr().String())
	}
	// Check the root key once at start: a wrong CRK_ID or API key shows in the log at once.
	go func() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_ = svc.Ready(cctx)
	}()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	serving.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-sctx.Done():
		gs.Stop()
	}
	_ = os.Remove(c.SocketPath)
	log.Info("stopped")
	return runErr
}

// listenUnix listens on path with mode 0600, replacing a stale socket left by a previous run
// (anything else at path is an error).
func listenUnix(path string) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("failed to listen on %s: it exists and is not a socket", path)
		}
		if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
			conn.Close()
			return nil, fmt.Errorf("failed to listen on %s: another server answers there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("failed to remove the stale socket %s: %w", path, err)
		}
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("failed to restrict %s to its owner: %w", path, err)
	}
	return l, nil
}

// healthMux serves liveness on livePath and /livez, readiness on /readyz.
func healthMux(livePath string, serving *atomic.Bool, svc *Service) http.Handler {
	mux := http.NewServeMux()
	live := func(w http.ResponseWriter, _ *http.Request) {
		if !serving.Load() {
			http.Error(w, "gRPC server not serving", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	}
	mux.HandleFunc("GET "+livePath, live)
	if livePath != "/livez" {
		mux.HandleFunc("GET /livez", live)
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !serving.Load() {
			http.Error(w, "gRPC server not serving", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := svc.Ready(ctx); err != nil {
			http.Error(w, strings.TrimSpace(err.Error()), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}
