package nodelab

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/keysync-dev/keysync/lab"
)

// component is one process of the lab: Status and Down list them from here, Up starts them
// through the step of the same name.
type component struct {
	// name names the pid file, the log file and the status line.
	name string
	// health builds the process's health check; it reads the runner's state when it runs.
	health func(r *runner) lab.HealthCheck
	// addr is what the process serves, for status lines; empty when nothing.
	addr func(r *runner) string
	// startTimeout bounds the wait for health on start.
	startTimeout time.Duration
}

// components are the lab's processes in start order.
func components() []component {
	httpAt := func(addr func(*runner) string, path string) func(*runner) lab.HealthCheck {
		return func(r *runner) lab.HealthCheck {
			return func(ctx context.Context) error { return lab.CheckHTTP(ctx, r.client, "http://"+addr(r)+path) }
		}
	}
	registry := func(r *runner) string { return r.st.Registry }
	mockkp := func(r *runner) string { return r.st.MockKP }
	etcd := func(r *runner) string { return r.st.Etcd }
	probe := func(r *runner) string { return r.st.SyncerProbe }
	kms := func(r *runner) string { return r.st.KMSHealth }
	return []component{
		// /v2/ answers 200 only to the lab's credentials.
		{name: "registry", addr: registry, health: func(r *runner) lab.HealthCheck { return r.registryHealth() }, startTimeout: 30 * time.Second},
		{name: "mockkp", addr: mockkp, health: httpAt(mockkp, "/healthz"), startTimeout: 30 * time.Second},
		{name: "crio", addr: func(r *runner) string { return r.l.CRISocket() },
			health: func(r *runner) lab.HealthCheck { return criHealth(r.l.CRISocket()) }, startTimeout: 90 * time.Second},
		{name: "etcd", addr: etcd, health: httpAt(etcd, "/health"), startTimeout: 60 * time.Second},
		// /livez: the process serves. Its /readyz (Key Protect answers, the root key is
		// active) is what the at-rest features watch; a Key Protect outage must not make the
		// lab restart the plug-in and, through kube-apiserver's KMS health, kube-apiserver.
		{name: "kms-plugin", addr: kms, health: httpAt(kms, "/livez"), startTimeout: 30 * time.Second},
		{name: "kube-apiserver", addr: func(r *runner) string { return r.apiURL() }, health: func(r *runner) lab.HealthCheck {
			return func(ctx context.Context) error { return lab.CheckHTTP(ctx, r.apiClient(), r.apiURL()+"/readyz") }
		}, startTimeout: 90 * time.Second},
		// /readyz: the informer has synced, so the keys tree matches the Secrets.
		{name: "syncer", addr: probe, health: httpAt(probe, "/readyz"), startTimeout: 60 * time.Second},
	}
}

func componentNamed(name string) component {
	for _, c := range components() {
		if c.name == name {
			return c
		}
	}
	panic("nodelab: no component " + name)
}

// process is c's lab.Process without Path and Args: enough for Running, Check and Stop; the
// start steps fill in the rest.
func (r *runner) process(c component) *lab.Process {
	return &lab.Process{Name: c.name, Dir: r.l.Dir, LogFile: r.l.Log(c.name), PidFile: r.l.PidFile(c.name),
		Health: c.health(r), StartTimeout: c.startTimeout, StopTimeout: 30 * time.Second}
}

// apiURL is kube-apiserver's base URL.
func (r *runner) apiURL() string { return "https://" + r.st.APIServer }

// apiClient calls kube-apiserver with the lab's admin token (its serving certificate is
// self-signed, on loopback: not verified).
func (r *runner) apiClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &lab.BearerTransport{Token: r.token,
		Base: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}} //nolint:gosec // loopback, self-signed
}

// ensure starts p unless it runs, is healthy and matches its fingerprint; the note says which.
func ensure(ctx context.Context, p *lab.Process) (string, error) {
	reused, err := p.Ensure(ctx)
	if err != nil {
		return "", err
	}
	pid, _ := p.Running()
	if reused {
		return fmt.Sprintf("reused pid %d", pid), nil
	}
	return fmt.Sprintf("pid %d", pid), nil
}

// fingerprint hashes a process's inputs (command line, config file contents).
func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// legacySupervisorName is the pid file name of the `keysync lab node serve` supervisor of
// earlier versions.
const legacySupervisorName = "lab"

// legacySupervisor returns the supervisor of an earlier version when it still runs (it stops
// its lab when stopped), nil otherwise.
func (r *runner) legacySupervisor() *lab.Process {
	p := &lab.Process{Name: "old lab supervisor", PidFile: r.l.PidFile(legacySupervisorName), StopTimeout: 3 * time.Minute}
	if _, ok := p.Running(); !ok {
		_ = os.Remove(p.PidFile)
		return nil
	}
	return p
}

// teardownSteps stops the processes that their pid files name as running (reverse start
// order), removing CRI-O's pods first, kills the containers a crashed CRI-O left and
// unmounts whatever is mounted under the work dir.
func (r *runner) teardownSteps() []lab.Step {
	var steps []lab.Step
	if legacy := r.legacySupervisor(); legacy != nil {
		steps = append(steps, stopStep(legacy))
	}
	cs := components()
	for i := len(cs) - 1; i >= 0; i-- {
		p := r.process(cs[i])
		if _, ok := p.Running(); !ok {
			// Not running: only a stale pid file to drop, nothing to show.
			_ = p.Stop(context.Background())
			continue
		}
		if cs[i].name == "crio" {
			steps = append(steps, lab.Step{Name: "Removing CRI-O pods", Run: func(ctx context.Context) (string, error) {
				if _, ok := p.Running(); !ok {
					return "CRI-O not running", nil
				}
				n, err := removeAllPods(ctx, r.l.CRISocket())
				return fmt.Sprintf("%d pods", n), err
			}})
		}
		steps = append(steps, stopStep(p))
	}
	// Containers whose CRI-O died (SIGKILL) keep running under conmon: kill them through runc's
	// state in the lab's runtime root.
	if ids := leftoverContainers(r.l); len(ids) > 0 {
		steps = append(steps, lab.Step{Name: "Killing leftover containers", Run: func(ctx context.Context) (string, error) {
			n, err := killContainers(ctx, r.l)
			return fmt.Sprintf("%d containers", n), err
		}})
	}
	steps = append(steps, lab.Step{Name: "Unmounting under the work dir", Run: func(context.Context) (string, error) {
		n, err := unmountUnder(r.l.Dir)
		return fmt.Sprintf("%d mounts", n), err
	}})
	return steps
}

func stopStep(p *lab.Process) lab.Step {
	return lab.Step{Name: "Stopping " + p.Name, Run: func(ctx context.Context) (string, error) {
		pid, ok := p.Running()
		if !ok {
			return "not running", p.Stop(ctx)
		}
		return fmt.Sprintf("pid %d", pid), p.Stop(ctx)
	}}
}
