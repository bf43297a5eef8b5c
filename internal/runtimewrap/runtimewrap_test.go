package runtimewrap

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const (
	statusLacking = "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n"
	statusFull    = "Name:\tcat\nCapBnd:\t000001ffffffffff\n"
)

// sampleSpec is a trimmed config.json as CRI-O writes it for a privileged infra container.
const sampleSpec = `{
  "ociVersion": "1.0.2-dev",
  "process": {
    "user": {"uid": 0, "gid": 0},
    "args": ["/catatonit", "-P"],
    "env": ["PATH=/usr/bin"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"],
      "effective": ["CAP_CHOWN", "CAP_SYS_RESOURCE"],
      "inheritable": ["CAP_SYS_RESOURCE"],
      "permitted": ["CAP_CHOWN", "CAP_SYS_RESOURCE"],
      "ambient": []
    },
    "oomScoreAdj": -998,
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "annotations": {"io.kubernetes.cri-o.ContainerType": "sandbox", "big": 12345678901234567890}
}`

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, b)
	}
	return m
}

func TestBoundingSetHas(t *testing.T) {
	tests := []struct {
		name    string
		status  string
		bit     int
		want    bool
		wantErr string
	}{
		{name: "lab VM lacks CAP_SYS_RESOURCE", status: statusLacking, bit: 24, want: false},
		{name: "lab VM has CAP_SYS_ADMIN", status: statusLacking, bit: 21, want: true},
		{name: "full bounding set", status: statusFull, bit: 24, want: true},
		{name: "no CapBnd line", status: "Name:\tcat\n", bit: 24, wantErr: "failed to find CapBnd"},
		{name: "garbage mask", status: "CapBnd:\tzz\n", bit: 24, wantErr: "failed to parse CapBnd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BoundingSetHas(strings.NewReader(tt.status), tt.bit)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// hostBounding is this VM's measured bounding set: every capability up to 40 but SYS_RESOURCE.
const hostBounding uint64 = 0x1fffeffffff

// kindNodeBounding is a kind node's under dockerd 20.10: also no PERFMON, BPF, CHECKPOINT_RESTORE.
const kindNodeBounding uint64 = 0x3ffeffffff

func TestRewriteSpec(t *testing.T) {
	tests := []struct {
		name        string
		spec        string
		bounding    uint64 // 0: hostBounding
		minAdj      int
		wantChanged bool
		wantCaps    map[string][]string // nil: not checked
		wantAdj     any                 // nil: absent
		wantErr     string
	}{
		{
			name: "privileged infra container", spec: sampleSpec, minAdj: 0, wantChanged: true,
			wantCaps: map[string][]string{
				"bounding": {"CAP_CHOWN", "CAP_SYS_ADMIN"}, "effective": {"CAP_CHOWN"},
				"inheritable": {}, "permitted": {"CAP_CHOWN"}, "ambient": {},
			},
			wantAdj: float64(0),
		},
		{
			name: "caller has a low oom_score_adj itself", spec: sampleSpec, minAdj: -999, wantChanged: true,
			wantCaps: map[string][]string{
				"bounding": {"CAP_CHOWN", "CAP_SYS_ADMIN"}, "effective": {"CAP_CHOWN"},
				"inheritable": {}, "permitted": {"CAP_CHOWN"}, "ambient": {},
			},
			wantAdj: float64(-998),
		},
		{
			name:   "only oomScoreAdj too low",
			spec:   `{"process":{"args":["sh"],"capabilities":{"bounding":["CAP_CHOWN"]},"oomScoreAdj":-997}}`,
			minAdj: -500, wantChanged: true, wantCaps: map[string][]string{"bounding": {"CAP_CHOWN"}}, wantAdj: float64(-500),
		},
		{
			name:   "nothing to do",
			spec:   `{"process":{"args":["sh"],"capabilities":{"bounding":["CAP_CHOWN"]},"oomScoreAdj":100}}`,
			minAdj: 0, wantChanged: false, wantCaps: map[string][]string{"bounding": {"CAP_CHOWN"}}, wantAdj: float64(100),
		},
		{
			name: "lower-case capability name", spec: `{"process":{"capabilities":{"effective":["cap_sys_resource","CAP_KILL"]}}}`,
			wantChanged: true, wantCaps: map[string][]string{"effective": {"CAP_KILL"}},
		},
		{
			name:     "kind node drops every capability outside its bounding set",
			spec:     `{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_PERFMON","CAP_BPF","CAP_CHECKPOINT_RESTORE","CAP_SYS_RESOURCE","CAP_NEW_ONE"]}}}`,
			bounding: kindNodeBounding, wantChanged: true,
			wantCaps: map[string][]string{"bounding": {"CAP_CHOWN", "CAP_NEW_ONE"}},
		},
		{
			name:        "host keeps PERFMON and BPF",
			spec:        `{"process":{"capabilities":{"bounding":["CAP_PERFMON","CAP_BPF","CAP_SYS_RESOURCE"]}}}`,
			wantChanged: true, wantCaps: map[string][]string{"bounding": {"CAP_PERFMON", "CAP_BPF"}},
		},
		{name: "no process", spec: `{"ociVersion":"1.0.2","root":{"path":"rootfs"}}`, wantChanged: false},
		{name: "null process", spec: `{"process":null}`, wantChanged: false},
		{name: "null capability set", spec: `{"process":{"capabilities":{"bounding":null,"effective":["CAP_SYS_RESOURCE"]}}}`,
			wantChanged: true},
		{name: "not JSON", spec: `{"process":`, wantErr: "failed to parse runtime spec"},
		{name: "JSON array", spec: `[]`, wantErr: "failed to parse runtime spec"},
		{name: "JSON null", spec: `null`, wantErr: "not a JSON object"},
		{name: "capabilities of the wrong type", spec: `{"process":{"capabilities":["CAP_SYS_RESOURCE"]}}`,
			wantErr: "failed to parse process.capabilities"},
		{name: "capability set of the wrong type", spec: `{"process":{"capabilities":{"bounding":"CAP_SYS_RESOURCE"}}}`,
			wantErr: "failed to parse process.capabilities.bounding"},
		{name: "oomScoreAdj not a number", spec: `{"process":{"oomScoreAdj":"low"}}`, wantErr: "failed to parse process.oomScoreAdj"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bnd := tt.bounding
			if bnd == 0 {
				bnd = hostBounding
			}
			out, changed, err := RewriteSpec([]byte(tt.spec), Limits{Bounding: bnd, MinOOMScoreAdj: tt.minAdj})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if out != nil {
					t.Fatalf("output on error: %s", out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.wantChanged {
				t.Fatalf("changed = %v, want %v", changed, tt.wantChanged)
			}
			if !changed && string(out) != tt.spec {
				t.Fatalf("unchanged spec was re-encoded:\n%s", out)
			}
			if strings.Contains(strings.ToUpper(string(out)), CapSysResource) {
				t.Fatalf("output still names %s:\n%s", CapSysResource, out)
			}
			m := decode(t, out)
			proc, _ := m["process"].(map[string]any)
			if tt.wantCaps != nil {
				caps := proc["capabilities"].(map[string]any)
				for set, want := range tt.wantCaps {
					var got []string
					for _, c := range caps[set].([]any) {
						got = append(got, c.(string))
					}
					if !slices.Equal(got, want) {
						t.Errorf("capabilities.%s = %v, want %v", set, got, want)
					}
				}
			}
			if proc != nil && proc["oomScoreAdj"] != tt.wantAdj {
				t.Errorf("oomScoreAdj = %v, want %v", proc["oomScoreAdj"], tt.wantAdj)
			}
		})
	}
}

func TestRewriteSpecKeepsOtherFields(t *testing.T) {
	out, changed, err := RewriteSpec([]byte(sampleSpec), Limits{Bounding: hostBounding})
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	// A number beyond float64 precision proves untouched members are copied as raw bytes.
	for _, want := range []string{`"big":12345678901234567890`, `"noNewPrivileges":true`, `"args":["/catatonit","-P"]`, `"readonly":true`} {
		compact := strings.NewReplacer(" ", "", "\n", "").Replace(string(out))
		if !strings.Contains(compact, want) {
			t.Errorf("output lost %s:\n%s", want, out)
		}
	}
}

func TestRewriteProcess(t *testing.T) {
	// The file `runc exec --process` reads is a bare process object.
	in := `{"args":["sh","-c","true"],"capabilities":{"bounding":["CAP_SYS_RESOURCE","CAP_NET_ADMIN"],"ambient":["CAP_SYS_RESOURCE"]},"oomScoreAdj":-998,"terminal":false}`
	out, changed, err := RewriteProcess([]byte(in), Limits{Bounding: hostBounding, MinOOMScoreAdj: -10})
	if err != nil || !changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	m := decode(t, out)
	want := map[string]any{
		"args":         []any{"sh", "-c", "true"},
		"capabilities": map[string]any{"bounding": []any{"CAP_NET_ADMIN"}, "ambient": []any{}},
		"oomScoreAdj":  float64(-10),
		"terminal":     false,
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("got %v, want %v", m, want)
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want Invocation
	}{
		{name: "conmon create", args: []string{"--root=/run/runc", "--systemd-cgroup", "--log", "/w/log.json", "--log-format", "json",
			"create", "--bundle", "/w/bundle", "--pid-file", "/w/pid", "ctr1"}, want: Invocation{Command: "create", Bundle: "/w/bundle"}},
		{name: "create with -b=", args: []string{"create", "-b=/b", "id"}, want: Invocation{Command: "create", Bundle: "/b"}},
		{name: "create in the working directory", args: []string{"--debug", "create", "id"}, want: Invocation{Command: "create"}},
		{name: "run with --bundle=", args: []string{"run", "--detach", "--bundle=/b2", "id"}, want: Invocation{Command: "run", Bundle: "/b2"}},
		{name: "exec with process file", args: []string{"--root", "/r", "exec", "--pid-file", "/p", "--process", "/w/proc.json", "--detach", "id"},
			want: Invocation{Command: "exec", ProcessFile: "/w/proc.json"}},
		{name: "exec with -p", args: []string{"exec", "-p", "/w/p.json", "id"}, want: Invocation{Command: "exec", ProcessFile: "/w/p.json"}},
		{name: "exec from the command line", args: []string{"exec", "-t", "id", "sh"}, want: Invocation{Command: "exec"}},
		{name: "exec command line after the id is not a flag", args: []string{"exec", "id", "--", "cat", "-p", "x"}, want: Invocation{Command: "exec"}},
		{name: "start passes through", args: []string{"--root", "/r", "start", "id"}, want: Invocation{Command: "start"}},
		{name: "version flag only", args: []string{"--version"}, want: Invocation{}},
		{name: "no args", args: nil, want: Invocation{}},
		{name: "global value flag eats its value", args: []string{"--log", "create", "state", "id"}, want: Invocation{Command: "state"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseArgs(tt.args); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// fakeRuntime writes an executable file and returns its path.
func fakeRuntime(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrepare(t *testing.T) {
	root := t.TempDir()
	binDir := filepath.Join(root, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	runc := fakeRuntime(t, binDir, "runc")
	other := fakeRuntime(t, root, "crun")
	self := fakeRuntime(t, root, "keysync-runtime-wrapper")
	writeFile := func(name, content string) string {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	lacking := writeFile("status-lacking", statusLacking)
	full := writeFile("status-full", statusFull)
	oom := writeFile("oom", "-100\n")
	lookPath := func(name string) (string, error) {
		if p := filepath.Join(binDir, name); fileExists(p) {
			return p, nil
		}
		return "", errors.New("not found")
	}

	tests := []struct {
		name      string
		status    string
		env       map[string]string
		args      func(bundle, proc string) []string
		wantPath  string
		wantArgv0 string
		wantStrip bool // wrapper flag removed from argv
		wantSpec  bool // config.json rewritten
		wantProc  bool // process file rewritten
		wantErr   string
	}{
		{name: "create rewrites the bundle", status: lacking,
			args:     func(b, _ string) []string { return []string{"--root", "/r", "create", "--bundle", b, "id"} },
			wantPath: runc, wantArgv0: "runc", wantSpec: true},
		{name: "create on a capable host passes through", status: full,
			args:     func(b, _ string) []string { return []string{"create", "--bundle", b, "id"} },
			wantPath: runc, wantArgv0: "runc"},
		{name: "exec rewrites the process file", status: lacking,
			args:     func(_, p string) []string { return []string{"exec", "--process", p, "id"} },
			wantPath: runc, wantArgv0: "runc", wantProc: true},
		{name: "start passes through", status: lacking,
			args:     func(string, string) []string { return []string{"start", "id"} },
			wantPath: runc, wantArgv0: "runc"},
		{name: "env names the runtime", status: lacking, env: map[string]string{RuntimeEnv: other},
			args:     func(b, _ string) []string { return []string{"run", "-b", b, "id"} },
			wantPath: other, wantArgv0: "crun", wantSpec: true},
		{name: "leading flag names the runtime and is removed", status: lacking, env: map[string]string{RuntimeEnv: runc},
			args:     func(b, _ string) []string { return []string{RuntimeFlag + "=" + other, "create", "--bundle", b, "id"} },
			wantPath: other, wantArgv0: "crun", wantStrip: true, wantSpec: true},
		{name: "leading flag with separate value", status: lacking,
			args:     func(string, string) []string { return []string{RuntimeFlag, other, "state", "id"} },
			wantPath: other, wantArgv0: "crun", wantStrip: true},
		{name: "the wrapper never runs itself", status: lacking, env: map[string]string{RuntimeEnv: self},
			args:    func(string, string) []string { return []string{"state", "id"} },
			wantErr: "failed to find the real OCI runtime"},
		{name: "missing runtime", status: lacking, env: map[string]string{RuntimeEnv: filepath.Join(root, "nope")},
			args:    func(string, string) []string { return []string{"state", "id"} },
			wantErr: "failed to find the real OCI runtime"},
		{name: "missing bundle config", status: lacking,
			args: func(string, string) []string {
				return []string{"create", "--bundle", filepath.Join(root, "nobundle"), "id"}
			},
			wantErr: "failed to read"},
		{name: "unreadable status", status: filepath.Join(root, "nostatus"),
			args:    func(b, _ string) []string { return []string{"create", "--bundle", b, "id"} },
			wantErr: "failed to open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle := t.TempDir()
			specPath := filepath.Join(bundle, "config.json")
			if err := os.WriteFile(specPath, []byte(sampleSpec), 0o640); err != nil {
				t.Fatal(err)
			}
			procPath := filepath.Join(t.TempDir(), "process.json")
			procJSON := `{"args":["sh"],"capabilities":{"effective":["CAP_SYS_RESOURCE"]},"oomScoreAdj":-998}`
			if err := os.WriteFile(procPath, []byte(procJSON), 0o600); err != nil {
				t.Fatal(err)
			}
			w := &Wrapper{
				StatusPath:      tt.status,
				OOMScoreAdjPath: oom,
				Getenv:          func(k string) string { return tt.env[k] },
				Getwd:           func() (string, error) { return bundle, nil },
				LookPath:        lookPath,
				Self:            self,
			}
			args := tt.args(bundle, procPath)
			path, argv, err := w.Prepare(args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if path != tt.wantPath || argv[0] != tt.wantArgv0 {
				t.Fatalf("runtime = %s %q, want %s %q", path, argv[0], tt.wantPath, tt.wantArgv0)
			}
			wantRest := args
			if tt.wantStrip {
				if strings.Contains(args[0], "=") {
					wantRest = args[1:]
				} else {
					wantRest = args[2:]
				}
			}
			if !slices.Equal(argv[1:], wantRest) {
				t.Fatalf("argv = %q, want %q", argv[1:], wantRest)
			}
			spec, _ := os.ReadFile(specPath)
			if got := string(spec) != sampleSpec; got != tt.wantSpec {
				t.Fatalf("config.json rewritten = %v, want %v:\n%s", got, tt.wantSpec, spec)
			}
			if tt.wantSpec {
				if strings.Contains(string(spec), CapSysResource) || !strings.Contains(string(spec), `"oomScoreAdj":-100`) {
					t.Fatalf("config.json not rewritten as expected:\n%s", spec)
				}
				if st, _ := os.Stat(specPath); st.Mode().Perm() != 0o640 {
					t.Fatalf("config.json mode = %v, want 0640", st.Mode().Perm())
				}
				entries, _ := os.ReadDir(bundle)
				if len(entries) != 1 {
					t.Fatalf("bundle holds %d entries, want only config.json", len(entries))
				}
			}
			proc, _ := os.ReadFile(procPath)
			if got := string(proc) != procJSON; got != tt.wantProc {
				t.Fatalf("process file rewritten = %v, want %v:\n%s", got, tt.wantProc, proc)
			}
		})
	}
}

func TestPrepareBadSpecLeavesFile(t *testing.T) {
	root := t.TempDir()
	status := filepath.Join(root, "status")
	oom := filepath.Join(root, "oom")
	runc := fakeRuntime(t, root, "runc")
	bad := `{"process":{"capabilities":{"bounding":"CAP_SYS_RESOURCE"}}}`
	spec := filepath.Join(root, "config.json")
	for p, c := range map[string]string{status: statusLacking, oom: "0", spec: bad} {
		if err := os.WriteFile(p, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	w := &Wrapper{StatusPath: status, OOMScoreAdjPath: oom, Getenv: func(string) string { return runc },
		Getwd: os.Getwd, LookPath: func(string) (string, error) { return "", errors.New("no") }}
	if _, _, err := w.Prepare([]string{"create", "--bundle", root, "id"}); err == nil ||
		!strings.Contains(err.Error(), "failed to rewrite") {
		t.Fatalf("err = %v, want a rewrite failure", err)
	}
	if got, _ := os.ReadFile(spec); string(got) != bad {
		t.Fatalf("config.json changed on error: %s", got)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// The capability rule holds on every host; the oom_score_adj clamp only where CAP_SYS_RESOURCE
// is missing.
func TestPrepareBoundingSets(t *testing.T) {
	const spec = `{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE","CAP_BPF","CAP_CHECKPOINT_RESTORE"]},"oomScoreAdj":-998}}`
	tests := []struct {
		name     string
		capBnd   string
		wantCaps []any // nil: file untouched
		wantAdj  float64
	}{
		{"VM without CAP_SYS_RESOURCE", "000001fffeffffff", []any{"CAP_CHOWN", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}, -100},
		{"kind node of an older dockerd (no bits 38-40)", "0000003fffffffff", []any{"CAP_CHOWN", "CAP_SYS_RESOURCE"}, -998},
		{"both", "0000003ffeffffff", []any{"CAP_CHOWN"}, -100},
		{"every capability", "000001ffffffffff", nil, -998},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			status := filepath.Join(dir, "status")
			oom := filepath.Join(dir, "oom")
			bundle := filepath.Join(dir, "bundle")
			if err := os.Mkdir(bundle, 0o755); err != nil {
				t.Fatal(err)
			}
			for p, data := range map[string]string{status: "CapBnd:\t" + tt.capBnd + "\n", oom: "-100\n", filepath.Join(bundle, "config.json"): spec} {
				if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			runc := fakeRuntime(t, dir, "runc")
			w := &Wrapper{StatusPath: status, OOMScoreAdjPath: oom, Getenv: func(string) string { return runc },
				Getwd: os.Getwd, LookPath: func(string) (string, error) { return "", errors.New("unused") }}
			if _, _, err := w.Prepare([]string{"create", "--bundle", bundle, "id"}); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantCaps == nil {
				if string(data) != spec {
					t.Fatalf("config.json rewritten on a host that can grant everything:\n%s", data)
				}
				return
			}
			proc := decode(t, data)["process"].(map[string]any)
			if got := proc["capabilities"].(map[string]any)["bounding"]; !reflect.DeepEqual(got, tt.wantCaps) {
				t.Errorf("bounding = %v, want %v", got, tt.wantCaps)
			}
			if got := proc["oomScoreAdj"]; got != tt.wantAdj {
				t.Errorf("oomScoreAdj = %v, want %v", got, tt.wantAdj)
			}
		})
	}
}
