// Command mockkp serves a mock IBM Key Protect + IAM (package mockkp) for labs and tests.
// See `mockkp --help`.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/keysync-dev/keysync/internal/atomicfile"
	"github.com/keysync-dev/keysync/mockkp"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newCommand(os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "ERROR: %v\n", err)
		os.Exit(1)
	}
}

type options struct {
	addr      string
	adminAddr string
	state     string
	seed      string
	tlsCert   string
	tlsKey    string
	tlsAddr   string
	tokenTTL  time.Duration
	logFormat string
	logLevel  string
	readyFile string
	rateLimit []string
}

func newCommand(stdout, stderr io.Writer) *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "mockkp",
		Short: "Mock IBM Key Protect (API v2) and IAM token service",
		Long: `mockkp serves a mock IBM Key Protect (API v2) and the IAM token endpoints
(/identity/token, /oidc/token) on --addr, and an admin API for fault injection and
per-operation request counters on --admin-addr. The official keyprotect-go-client
talks to it unchanged: set the client's BaseURL to the API URL and TokenURL to
<API URL>/identity/token.

Keys are real AES-256-GCM keys; nothing is persisted unless --state is given. Use
--seed to create instances, API keys and root keys with fixed ids:

  {"instances": [{"id": "<instance id>", "apiKeys": ["<api key>"],
    "rootKeys": [{"id": "<key id>", "name": "<name>",
                  "material": "<base64 of 32 bytes, optional>"}]}]}

Admin API (plain HTTP, keep it on loopback):
  GET /counters, DELETE /counters, GET /faults, DELETE /faults, GET /healthz
  POST /faults {"op":"unwrap","kind":"status","status":503,"count":2}
               {"op":"wrap","kind":"latency","latency":"250ms"}
               {"op":"*","kind":"drop"}
               {"op":"token","kind":"html","status":503,"retryAfter":"2s"}
                 (an HTML error page, as a gateway sends; retryAfter also on status faults)
               {"op":"token","kind":"status","status":503,"for":"30s","retryAfter":"5s"}
  GET /ratelimits, DELETE /ratelimits
  POST /ratelimits {"op":"unwrap","rate":100,"burst":100}   ({"op":"unwrap"} removes it)
  GET /counters also has "ratelimited.<op>": the 429s a rate limit served.
  ops: ` + strings.Join(mockkp.Ops(), ", ") + `

The official client fetches IAM tokens with Go's default transport, so with TLS
the client host must trust the certificate through its system roots (SSL_CERT_FILE).`,
		Example: `  mockkp --seed seed.json --state /var/lib/mockkp/state.json
  mockkp --addr 0.0.0.0:8443 --tls-cert tls.crt --tls-key tls.key --seed seed.json`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd.Context(), o, stderr)
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:8300", "listen address of the Key Protect API, IAM token endpoints and /healthz (port 0 picks a free port)")
	f.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:8301", "listen address of the admin API (faults, counters); empty disables it")
	f.StringVar(&o.state, "state", "", "state file: loaded at start if it exists, rewritten atomically (mode 0600) after every change; default in memory only")
	f.StringVar(&o.seed, "seed", "", "seed file (JSON, see above) with instances, API keys and root keys to create if absent")
	f.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate file: serve the API over HTTPS (needs --tls-key)")
	f.StringVar(&o.tlsKey, "tls-key", "", "PEM private key file for --tls-cert")
	f.StringVar(&o.tlsAddr, "tls-addr", "", "serve the same API over HTTPS (--tls-cert, --tls-key) on this address too, --addr staying plain HTTP (labs: the public IAM and Key Protect names on :443 for the synchronizer under test)")
	f.DurationVar(&o.tokenTTL, "token-ttl", mockkp.DefaultTokenTTL, "lifetime of issued IAM access tokens (expires_in)")
	f.StringVar(&o.logFormat, "log-format", "text", "request log format on stderr: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringArrayVar(&o.rateLimit, "rate-limit", nil, "OP=RATE[:BURST]: at most RATE requests of OP per second and Key Protect instance (token bucket of BURST, default RATE), 429 with Retry-After beyond; repeatable, e.g. --rate-limit unwrap=100")
	f.StringVar(&o.readyFile, "ready-file", "", "once listening, write MOCKKP_URL, MOCKKP_TOKEN_URL and MOCKKP_ADMIN_URL lines (KEY=VALUE) to this file atomically")
	return cmd
}

func newLogger(o options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: %w", o.logLevel, err)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, hopts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, hopts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: want text or json", o.logFormat)
}

func run(ctx context.Context, o options, stderr io.Writer) error {
	log, err := newLogger(o, stderr)
	if err != nil {
		return err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if o.tlsAddr != "" && o.tlsCert == "" {
		return errors.New("--tls-addr needs --tls-cert and --tls-key")
	}
	if o.tlsCert != "" {
		// Before listening: a lab waiting for the ready file must not see a mockkp that
		// then fails on its certificate.
		if _, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey); err != nil {
			return fmt.Errorf("invalid --tls-cert/--tls-key: %w", err)
		}
	}
	mo := mockkp.Options{StatePath: o.state, TokenTTL: o.tokenTTL, Logger: log}
	for _, v := range o.rateLimit {
		l, err := mockkp.ParseRateLimit(v)
		if err != nil {
			return fmt.Errorf("invalid --rate-limit: %w", err)
		}
		mo.RateLimits = append(mo.RateLimits, l)
	}
	if o.seed != "" {
		if mo.Seed, err = mockkp.LoadSeed(o.seed); err != nil {
			return err
		}
	}
	srv, err := mockkp.New(mo)
	if err != nil {
		return fmt.Errorf("failed to start mockkp: %w", err)
	}

	apiLn, err := net.Listen("tcp", o.addr)
	if err != nil {
		return fmt.Errorf("failed to listen on --addr: %w", err)
	}
	// tlsOn says which listeners serve HTTPS: --addr when --tls-cert is given alone, else
	// --tls-addr.
	scheme, tlsOn := "http", map[int]bool{}
	if o.tlsCert != "" && o.tlsAddr == "" {
		scheme, tlsOn[0] = "https", true
	}
	apiURL := scheme + "://" + apiLn.Addr().String()
	servers := []*http.Server{{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}}
	listeners := []net.Listener{apiLn}
	tlsURL := ""
	if o.tlsAddr != "" {
		tlsLn, err := net.Listen("tcp", o.tlsAddr)
		if err != nil {
			apiLn.Close()
			return fmt.Errorf("failed to listen on --tls-addr: %w", err)
		}
		tlsURL = "https://" + tlsLn.Addr().String()
		tlsOn[len(servers)] = true
		servers = append(servers, &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, tlsLn)
	}
	adminURL := ""
	if o.adminAddr != "" {
		adminLn, err := net.Listen("tcp", o.adminAddr)
		if err != nil {
			for _, ln := range listeners {
				ln.Close()
			}
			return fmt.Errorf("failed to listen on --admin-addr: %w", err)
		}
		adminURL = "http://" + adminLn.Addr().String()
		servers = append(servers, &http.Server{Handler: srv.AdminHandler(), ReadHeaderTimeout: 10 * time.Second})
		listeners = append(listeners, adminLn)
	}

	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			var err error
			if tlsOn[i] {
				err = s.ServeTLS(listeners[i], o.tlsCert, o.tlsKey)
			} else {
				err = s.Serve(listeners[i])
			}
			errc <- err
		}()
	}
	log.Info("mockkp listening", "url", apiURL, "token_url", apiURL+"/identity/token", "tls_url", tlsURL, "admin_url", adminURL,
		"state", o.state, "seed", o.seed)
	if o.readyFile != "" {
		content := fmt.Sprintf("MOCKKP_URL=%s\nMOCKKP_TOKEN_URL=%s/identity/token\nMOCKKP_ADMIN_URL=%s\n", apiURL, apiURL, adminURL)
		if tlsURL != "" {
			content += "MOCKKP_TLS_URL=" + tlsURL + "\n"
		}
		if err := atomicfile.Write(o.readyFile, []byte(content), 0o600); err != nil {
			shutdown(servers)
			return err
		}
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("mockkp stopping")
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("failed to serve: %w", err)
		}
	}
	shutdown(servers)
	return runErr
}

func shutdown(servers []*http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(ctx)
	}
}
