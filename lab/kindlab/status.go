package kindlab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/keysync-dev/keysync/lab"
)

// Status checks every part of the lab: the kind cluster and each node container, the registry
// and mockkp containers (running and answering), the synchronizer DaemonSet (one ready pod per
// node) and the env file. A part that the env file says was left out (no mockkp URL: `--skip
// mockkp`) is not checked.
func (l *Lab) Status(ctx context.Context) (lab.Status, error) {
	st := lab.Status{Kind: lab.KindKind}
	add := func(name string, err error, detail string) {
		c := lab.Component{Name: name, Up: err == nil, Detail: detail}
		if err != nil {
			c.Detail = err.Error()
		}
		st.Components = append(st.Components, c)
	}
	env, envErr := lab.LoadEnv(l.Opts.EnvPath)
	if envErr == nil && env.Lab != lab.KindKind {
		envErr = fmt.Errorf("%s describes a %s lab", l.Opts.EnvPath, env.Lab)
	}
	clusters, err := l.Provider.List()
	if err != nil {
		return st, fmt.Errorf("failed to list kind clusters: %w", err)
	}
	if !slices.Contains(clusters, l.Opts.Name) {
		add("cluster", fmt.Errorf("no kind cluster %s", l.Opts.Name), "")
	} else {
		nodes, err := l.Provider.ListNodes(l.Opts.Name)
		if err != nil {
			return st, fmt.Errorf("failed to list nodes of cluster %s: %w", l.Opts.Name, err)
		}
		var down, up []string
		for _, n := range nodes {
			if running, _ := containerRunning(ctx, n.String()); running {
				up = append(up, n.String())
			} else {
				down = append(down, n.String())
			}
		}
		slices.Sort(up)
		switch {
		case len(down) > 0:
			add("cluster", fmt.Errorf("node containers stopped: %s", strings.Join(down, ", ")), "")
		default:
			add("cluster", nil, fmt.Sprintf("%s: %s", l.Opts.Name, strings.Join(up, ", ")))
		}
	}
	add("registry", l.containerServes(ctx, RegistryContainer, "http://"+RegistryHostAddr+"/v2/"), RegistryHostAddr)
	if envErr != nil || env.MockKPAdminURL != "" {
		add("mockkp", l.containerServes(ctx, MockKPContainer, "http://"+MockKPHostAddr+"/healthz"), MockKPHostAddr)
	}
	if st.Components[0].Up {
		ready, err := l.syncerReady(ctx)
		add("synchronizer", err, ready)
	} else {
		add("synchronizer", errors.New("no cluster"), "")
	}
	add("env file", envErr, l.Opts.EnvPath)
	return st, nil
}

// containerServes checks that container runs and url answers (any HTTP status: the process
// listens).
func (l *Lab) containerServes(ctx context.Context, container, url string) error {
	running, err := containerRunning(ctx, container)
	if err != nil {
		return err
	}
	if !running {
		return fmt.Errorf("container %s is not running", container)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("failed to build request for %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("container %s runs but %s does not answer: %w", container, url, err)
	}
	resp.Body.Close()
	return nil
}

// syncerReady reads the synchronizer DaemonSet's ready and desired pod counts.
func (l *Lab) syncerReady(ctx context.Context) (string, error) {
	out, err := l.adminKubectl(ctx, "-n", SyncerNamespace, "get", "daemonsets", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.numberReady} {.status.desiredNumberScheduled}{"\n"}{end}`)
	if err != nil {
		return "", fmt.Errorf("failed to read the synchronizer DaemonSet: %w", err)
	}
	return parseDaemonSetReady(out)
}

// parseDaemonSetReady parses "name ready desired" lines: ready only if there is a DaemonSet and
// every one has all its pods ready.
func parseDaemonSetReady(out string) (string, error) {
	var lines []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 {
			return "", fmt.Errorf("unexpected DaemonSet status line %q", line)
		}
		if f[1] != f[2] || f[2] == "0" {
			return "", fmt.Errorf("DaemonSet %s: %s of %s pods ready", f[0], f[1], f[2])
		}
		lines = append(lines, fmt.Sprintf("%s %s/%s ready", f[0], f[1], f[2]))
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("no DaemonSet in namespace %s", SyncerNamespace)
	}
	return strings.Join(lines, "; "), nil
}
