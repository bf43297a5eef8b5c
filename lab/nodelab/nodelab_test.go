package nodelab

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keysync-dev/keysync/lab"
)

func TestOptionsValidateUp(t *testing.T) {
	ok := Options{WorkDir: "/w", EnvFile: "/w/lab.env", BinDir: "/b", CRIOBinDir: "/c", K8sBinDir: "/k"}
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr []string
	}{
		{name: "complete", mutate: func(*Options) {}},
		{name: "relative work dir", mutate: func(o *Options) { o.WorkDir = "_out/node-lab" }, wantErr: []string{`work dir "_out/node-lab" is not absolute`}},
		{name: "nothing set", mutate: func(o *Options) { *o = Options{} },
			wantErr: []string{"work dir is not set", "env file is not set", "CRI-O bin dir is not set", "Kubernetes bin dir is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mutate(&o)
			err := o.validateUp()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want %q", err, w)
				}
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "work dir only", opts: Options{WorkDir: "/w"}},
		{name: "no work dir", opts: Options{}, wantErr: `work dir "" must be absolute`},
		{name: "relative work dir", opts: Options{WorkDir: "w"}, wantErr: `work dir "w" must be absolute`},
		{name: "relative env file", opts: Options{WorkDir: "/w", EnvFile: "lab.env"}, wantErr: `env file "lab.env" must be absolute`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.opts)
			if tt.wantErr == "" {
				if err != nil || l.Kind() != lab.KindNode {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestComponents(t *testing.T) {
	var names []string
	for _, c := range components() {
		names = append(names, c.name)
		if componentNamed(c.name).name != c.name || c.health == nil || c.addr == nil || c.startTimeout <= 0 {
			t.Errorf("component %q is incomplete", c.name)
		}
	}
	if got, want := strings.Join(names, ","), "registry,mockkp,crio,etcd,kms-plugin,kube-apiserver,syncer"; got != want {
		t.Fatalf("components %s, want %s", got, want)
	}
}

// startFake runs `sleep` as the lab's process called name (pid file and log in the work dir).
func startFake(t *testing.T, work, name string) *lab.Process {
	t.Helper()
	l := Layout{Dir: work}
	if err := os.MkdirAll(l.RunDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(l.LogDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	p := &lab.Process{Name: name, Path: "/bin/sleep", Args: []string{"60"}, LogFile: l.Log(name), PidFile: l.PidFile(name),
		StopTimeout: 2 * time.Second}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	return p
}

func writeState(t *testing.T, work string, st state) {
	t.Helper()
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(Layout{Dir: work}.StateFile(), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStatusTellsTheTruth: a component is up only when its process runs and its health check
// passes; the lab is ready only when every component is up.
func TestStatusTellsTheTruth(t *testing.T) {
	work := t.TempDir()
	healthy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(healthy.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	writeState(t, work, state{MockKP: strings.TrimPrefix(healthy.URL, "http://"), Registry: strings.TrimPrefix(dead.URL, "http://")})
	nl, err := New(Options{WorkDir: work})
	if err != nil {
		t.Fatal(err)
	}

	st, err := nl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Ready() || len(st.Components) != len(components()) {
		t.Fatalf("empty work dir: ready=%v, %d components", st.Ready(), len(st.Components))
	}
	for _, c := range st.Components {
		if c.Up || c.Detail != "not running" {
			t.Errorf("empty work dir: %+v", c)
		}
	}

	mockkp := startFake(t, work, "mockkp")
	startFake(t, work, "registry")
	st, err = nl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]lab.Component{}
	for _, c := range st.Components {
		byName[c.Name] = c
	}
	if c := byName["mockkp"]; !c.Up || !strings.Contains(c.Detail, healthy.URL[len("http://"):]) {
		t.Errorf("mockkp runs and is healthy: %+v", c)
	}
	if c := byName["registry"]; c.Up || !strings.Contains(c.Detail, "unhealthy") {
		t.Errorf("registry runs but does not answer: %+v", c)
	}
	if c := byName["syncer"]; c.Up || c.Detail != "not running" {
		t.Errorf("syncer: %+v", c)
	}
	var out bytes.Buffer
	if err := st.Write(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "node lab: NOT ready (6 of 7 components down)") {
		t.Errorf("status output:\n%s", out.String())
	}

	if err := mockkp.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err = nl.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Components[1]; c.Name != "mockkp" || c.Up {
		t.Errorf("mockkp stopped: %+v", c)
	}
}

func TestDown(t *testing.T) {
	work := t.TempDir()
	envFile := filepath.Join(t.TempDir(), "lab.env")
	syncer := startFake(t, work, "syncer")
	mockkp := startFake(t, work, "mockkp")
	syncerPid, _ := syncer.Running()
	// A stale pid file of a process that is gone is dropped silently.
	stale := Layout{Dir: work}.PidFile("etcd")
	if err := os.WriteFile(stale, []byte("999999999 1 x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &runner{l: Layout{Dir: work}, opts: Options{WorkDir: work, EnvFile: envFile}}
	if _, err := r.writeEnv("", ""); err != nil {
		t.Fatal(err)
	}
	nl, err := New(Options{WorkDir: work, EnvFile: envFile})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := nl.Down(context.Background(), &out); err != nil {
		t.Fatalf("down: %v\n%s", err, out.String())
	}
	got := out.String()
	iSyncer := strings.Index(got, "✓ Stopping syncer (pid ")
	iMockKP := strings.Index(got, "✓ Stopping mockkp (pid ")
	if iSyncer < 0 || iMockKP < iSyncer {
		t.Errorf("down did not stop syncer (pid %d), then mockkp:\n%s", syncerPid, got)
	}
	for _, want := range []string{"✓ Unmounting under the work dir (0 mounts)", "✓ Removing the env file (removed)"} {
		if !strings.Contains(got, want) {
			t.Errorf("down output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "etcd") {
		t.Errorf("down showed a process that was not running:\n%s", got)
	}
	for _, p := range []*lab.Process{syncer, mockkp} {
		if _, ok := p.Running(); ok {
			t.Errorf("%s still runs after down", p.Name)
		}
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale pid file kept: %v", err)
	}

	// Again, on a lab that is not up.
	out.Reset()
	if err := nl.Down(context.Background(), &out); err != nil {
		t.Fatalf("second down: %v\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "Stopping") || !strings.Contains(out.String(), "Removing the env file (absent)") {
		t.Errorf("second down:\n%s", out.String())
	}
}

func TestRemoveEnv(t *testing.T) {
	work := t.TempDir()
	tests := []struct {
		name     string
		env      *lab.Env
		wantNote string
		wantGone bool
	}{
		{name: "absent", wantNote: "absent", wantGone: true},
		{name: "this lab's", env: &lab.Env{Lab: lab.KindNode, Kubeconfig: "/k", Nodes: []string{"n"}, CRIEndpoint: "/s", KeysRoot: "/r",
			Extra: map[string]string{"NODE_LAB_WORK_DIR": work}}, wantNote: "removed", wantGone: true},
		{name: "another node lab's", env: &lab.Env{Lab: lab.KindNode, Kubeconfig: "/k", Nodes: []string{"n"}, CRIEndpoint: "/s", KeysRoot: "/r",
			Extra: map[string]string{"NODE_LAB_WORK_DIR": "/elsewhere"}}, wantNote: "kept: not this lab's"},
		{name: "the kind lab's", env: &lab.Env{Lab: lab.KindKind, Kubeconfig: "/k", Nodes: []string{"n"}}, wantNote: "kept: not this lab's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lab.env")
			if tt.env != nil {
				if err := lab.WriteEnv(path, *tt.env); err != nil {
					t.Fatal(err)
				}
			}
			r := &runner{l: Layout{Dir: work}}
			note, err := r.removeEnv(path)
			if err != nil || note != tt.wantNote {
				t.Fatalf("removeEnv = %q, %v; want %q", note, err, tt.wantNote)
			}
			if _, err := os.Stat(path); os.IsNotExist(err) != tt.wantGone {
				t.Fatalf("file gone = %v, want %v", os.IsNotExist(err), tt.wantGone)
			}
		})
	}
}

func TestEnvDescribesTheNodeLab(t *testing.T) {
	work := t.TempDir()
	r := &runner{l: Layout{Dir: work}, st: state{Registry: "127.0.0.1:5000", MockKP: "127.0.0.1:8300", MockKPAdmin: "127.0.0.1:8301",
		Etcd: "127.0.0.1:2379", KMSHealth: "127.0.0.1:8082"},
		opts: Options{EnvFile: filepath.Join(work, "lab.env")}}
	env, err := r.writeEnv("keysync lab disrupt kill-syncer --kind node", "keysync lab disrupt restart-apiserver --kind node")
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := lab.LoadEnv(r.opts.EnvFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []lab.Env{env, loaded} {
		if e.Access() != lab.AccessHost || e.NodeAccess != lab.AccessHost {
			t.Errorf("node access %q, want host", e.NodeAccess)
		}
		for _, c := range []lab.Capability{lab.CapIsolated, lab.CapMockKP, lab.CapRunImage, lab.CapKMS, lab.CapEtcd, lab.CapRegistryAuth, lab.CapKillSyncer, lab.CapRestartAPIServer, lab.CapKPPublicNames, lab.CapPlant} {
			if !e.Has(c) {
				t.Errorf("capability %s missing: %v", c, e.Capabilities)
			}
		}
		for _, c := range []lab.Capability{lab.CapCluster, lab.CapAddNode} {
			if e.Has(c) {
				t.Errorf("capability %s claimed", c)
			}
		}
		if strings.Join(e.EtcdEndpoints, ",") != "http://127.0.0.1:2379" || e.KMSRootKeyID != KPKMSRootKeyID ||
			e.KMSHealthURL != "http://127.0.0.1:8082/readyz" {
			t.Errorf("etcd and KMS keys: %v %q %q", e.EtcdEndpoints, e.KMSRootKeyID, e.KMSHealthURL)
		}
		if e.KillSyncerCmd == "" || e.RestartAPIServerCmd == "" {
			t.Errorf("disrupt commands missing: %+v", e)
		}
		if e.KPPublicURL != "https://us-south.kms.cloud.ibm.com" || e.KPCAFile != filepath.Join(work, "lab-ca", "ca.crt") {
			t.Errorf("public names: KP_PUBLIC_URL %q, KP_CA_FILE %q", e.KPPublicURL, e.KPCAFile)
		}
		if e.SyncSubdir != "synced" || e.SyncerNamespace != "image-key-synchronizer" || e.KeysRoot != filepath.Join(work, "keys") {
			t.Errorf("env: %+v", e)
		}
	}
	data, err := os.ReadFile(r.opts.EnvFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"NODE_ACCESS=host\n", "CAPABILITIES=isolated,mockkp,run-image,kms,etcd,registry-auth,kp-public-names,plant,kill-syncer,restart-apiserver\n",
		"REGISTRY_AUTH_FILE=" + filepath.Join(work, "registry", "auth.json") + "\n", "ETCD_ENDPOINTS=http://127.0.0.1:2379\n", "REGISTRY=127.0.0.1:5000\n"} {
		if !strings.Contains(string(data), line) {
			t.Errorf("env file lacks %q:\n%s", line, data)
		}
	}
}

// TestPublicNamesFor: the synchronizer sees the lab's hosts file and resolv.conf, trusts the
// lab CA, and gets no proxy settings (a proxy would look the public names up itself).
func TestPublicNamesFor(t *testing.T) {
	work := t.TempDir()
	r := &runner{l: Layout{Dir: work}}
	if err := os.MkdirAll(r.l.MockKPDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.publicNames("127.44.0.7:443"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
	t.Setenv("no_proxy", "localhost")
	t.Setenv("SSL_CERT_FILE", "/elsewhere.pem")
	p := &lab.Process{}
	fp, err := r.publicNamesFor(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []lab.Bind{{Source: r.l.SyncerHosts(), Target: "/etc/hosts"}, {Source: r.l.SyncerResolvConf(), Target: "/etc/resolv.conf"}}
	if !slices.Equal(p.Binds, want) {
		t.Errorf("Binds = %+v, want %+v", p.Binds, want)
	}
	certs := 0
	for _, kv := range p.Env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case strings.Contains(strings.ToLower(k), "proxy"):
			t.Errorf("the synchronizer gets %s", kv)
		case k == "SSL_CERT_FILE":
			certs++
			if v != filepath.Join(work, "lab-ca", "ca.crt") {
				t.Errorf("SSL_CERT_FILE = %s", v)
			}
		}
	}
	if certs != 1 {
		t.Errorf("SSL_CERT_FILE set %d times", certs)
	}
	hosts, _ := os.ReadFile(r.l.SyncerHosts())
	resolv, _ := os.ReadFile(r.l.SyncerResolvConf())
	if !strings.Contains(string(hosts), "127.44.0.7 iam.cloud.ibm.com") || !strings.Contains(string(resolv), "nameserver 127.44.0.7\n") {
		t.Errorf("hosts %q, resolv.conf %q: want the public names and the name server at mockkp's address", hosts, resolv)
	}
	if !strings.Contains(fp, string(resolv)) {
		t.Errorf("the fingerprint does not cover resolv.conf")
	}
}

// TestNoPublicNamesWithoutTheLabsSynchronizer: with "none" the lab maps nothing for the
// synchronizer, so it does not claim kp-public-names.
func TestNoPublicNamesWithoutTheLabsSynchronizer(t *testing.T) {
	for _, tc := range []struct {
		synchronizer string
		want         bool
	}{{"", true}, {"/opt/theirs --kubeconfig {kubeconfig}", true}, {SynchronizerNone, false}} {
		r := &runner{l: Layout{Dir: t.TempDir()}, opts: Options{Synchronizer: tc.synchronizer}}
		if got := r.env("", "").Has(lab.CapKPPublicNames); got != tc.want {
			t.Errorf("synchronizer %q: kp-public-names %v, want %v", tc.synchronizer, got, tc.want)
		}
	}
}
