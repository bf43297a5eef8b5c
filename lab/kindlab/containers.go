package kindlab

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
)

// LabelLab marks every container the kind lab starts besides kind's own nodes; Down removes
// them by this label.
const LabelLab = "keysync.dev/lab"

// service is one long-lived container of the lab (the registry, mockkp), started through
// testcontainers-go from an image built here (never pulled).
type service struct {
	Name  string
	Image string
	// Network is the docker network to join (default the kind network).
	Network string
	// Ports maps a container port ("5000/tcp") to its host address ("127.0.0.1:5001").
	Ports map[string]string
	// Binds are docker bind mounts ("host:container:ro").
	Binds []string
	// Aliases are further names of the container on its network.
	Aliases []string
	Cmd     []string
	// Ready is the HTTP path (on the lowest container port's host address) that answers once
	// the service serves; any status counts.
	Ready string
}

// ryukOff turns off testcontainers-go's reaper: its image would have to be pulled, which
// these hosts cannot do, and the lab's containers must outlive the command that started them
// anyway (Down removes them by LabelLab). testcontainers-go reads the setting from the
// environment once, at its first use.
func ryukOff() {
	if os.Getenv("TESTCONTAINERS_RYUK_DISABLED") == "" {
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
}

// tcLogger sends testcontainers-go's chatter to the lab's logger at debug level.
type tcLogger struct{ l *slog.Logger }

func (t tcLogger) Printf(format string, v ...any) { t.l.Debug(fmt.Sprintf(format, v...)) }

// requestOptions turns s into testcontainers-go options: the name (reused when a container of
// that name exists), the kind network, fixed loopback port bindings, restart unless stopped,
// the lab label, and an HTTP wait on Ready.
func (s service) requestOptions(logger *slog.Logger) ([]testcontainers.ContainerCustomizer, error) {
	bindings := mobynet.PortMap{}
	var exposed []string
	for cport, hostAddr := range s.Ports {
		p, err := mobynet.ParsePort(cport)
		if err != nil {
			return nil, fmt.Errorf("invalid container port %q of %s: %w", cport, s.Name, err)
		}
		ap, err := netip.ParseAddrPort(hostAddr)
		if err != nil {
			return nil, fmt.Errorf("invalid host address %q of %s: %w", hostAddr, s.Name, err)
		}
		bindings[p] = []mobynet.PortBinding{{HostIP: ap.Addr(), HostPort: fmt.Sprint(ap.Port())}}
		exposed = append(exposed, cport)
	}
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithReuseByName(s.Name),
		testcontainers.WithLabels(map[string]string{LabelLab: DefaultName}),
		testcontainers.WithExposedPorts(exposed...),
		tcnetwork.WithNetworkName(s.Aliases, cmp.Or(s.Network, KindNetwork)),
		testcontainers.WithLogger(tcLogger{l: logger}),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = bindings
			hc.Binds = append(hc.Binds, s.Binds...)
			hc.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
		}),
	}
	if len(s.Cmd) > 0 {
		opts = append(opts, testcontainers.WithCmd(s.Cmd...))
	}
	return opts, nil
}

// readyPort is the container port whose host address Ready is polled on: the lowest.
func (s service) readyPort() string {
	return slices.Min(slices.Collect(maps.Keys(s.Ports)))
}

// start runs s, or starts the stopped container of that name, and waits until it serves.
func (s service) start(ctx context.Context, logger *slog.Logger) error {
	ryukOff()
	opts, err := s.requestOptions(logger)
	if err != nil {
		return err
	}
	if _, err := testcontainers.Run(ctx, s.Image, opts...); err != nil {
		logs, _ := docker(ctx, nil, "logs", "--tail", "20", s.Name)
		return fmt.Errorf("failed to start container %s: %w (last logs: %s)", s.Name, err, logs)
	}
	if s.Ready == "" {
		return nil
	}
	// Our own readiness wait on the fixed loopback address (any HTTP status: it listens).
	url := "http://" + s.Ports[s.readyPort()] + s.Ready
	if err := waitAnswer(ctx, url, 30*time.Second); err != nil {
		logs, _ := docker(ctx, nil, "logs", "--tail", "20", s.Name)
		return fmt.Errorf("container %s does not serve: %w (last logs: %s)", s.Name, err, logs)
	}
	return nil
}

// waitAnswer polls url until it answers with any HTTP status (a registry that requires
// credentials answers 401) or timeout passes.
func waitAnswer(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("failed to build request for %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failed to reach %s within %s: %w", url, timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ErrForeignContainer says a lab container was made by another lab (another checkout's out
// dir, or an older keysync): reusing it would mix two labs' credentials, seeds or CAs.
var ErrForeignContainer = errors.New("the lab's container belongs to another lab")

// checkOwnBinds fails with ErrForeignContainer when the existing container name does not mount
// binds ("source:destination[:ro]") from the same sources: a container another checkout made
// reads its files from that checkout's out dir.
func checkOwnBinds(ctx context.Context, name string, binds []string) error {
	out, err := docker(ctx, nil, "inspect", "-f", "{{range .Mounts}}{{.Source}}|{{.Destination}}\n{{end}}", name)
	if err != nil {
		return err
	}
	have := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if src, dst, ok := strings.Cut(strings.TrimSpace(line), "|"); ok {
			have[dst] = src
		}
	}
	for _, b := range binds {
		src, rest, _ := strings.Cut(b, ":")
		dst, _, _ := strings.Cut(rest, ":")
		if have[dst] != src {
			return fmt.Errorf("%w: container %s mounts %q at %s, this lab's is %s (make lab-down removes the cluster, registry and mockkp; then make lab-up)",
				ErrForeignContainer, name, have[dst], dst, src)
		}
	}
	return nil
}
