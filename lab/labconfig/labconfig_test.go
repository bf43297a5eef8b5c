package labconfig

import (
	"bytes"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/containers/image/v5/pkg/sysregistriesv2"
	"github.com/containers/image/v5/signature"
	"github.com/containers/image/v5/types"

	"github.com/keysync-dev/keysync/internal/kpkey"
)

// kindParams is the kind variant as lab/kindlab renders it.
func kindParams(t *testing.T) Params {
	t.Helper()
	p, err := Kind(KindInput{Registry: "kind-registry:5000", RegistryAliases: []string{"127.0.0.1:5001", "localhost:5001"}, PauseVersion: "3.10.1"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// nodeParams is shaped like lab/nodelab's variant (whose own test compares the real one).
func nodeParams(dir string) Params {
	j := func(p ...string) string { return filepath.Join(append([]string{dir}, p...)...) }
	return Params{
		Lab:      "node",
		Registry: "127.0.0.1:41234",
		CRIO: CRIO{
			Listen: j("run", "crio.sock"), KeysPath: j("keys"), SignaturePolicy: j("crio", "policy.json"),
			PauseImage: "127.0.0.1:41234/keysync/pause:3.10.1", CgroupManager: "cgroupfs",
			PinnsPath: "/c/pinns", RuntimePath: "/usr/sbin/runc", RuntimeRoot: j("crio", "run", "runc"),
			MonitorPath: "/usr/bin/conmon", NetworkDir: j("crio", "net.d"), PluginDirs: []string{"/usr/lib/cni"},
			State: &CRIOState{
				Root: j("crio", "storage"), RunRoot: j("crio", "run", "storage"), LogDir: j("crio", "pod-logs"),
				VersionFile: j("crio", "run", "version"), VersionFilePersist: j("crio", "version"),
				CleanShutdownFile: j("crio", "clean.shutdown"), ExitsDir: j("crio", "run", "exits"),
				AttachSocketDir: j("crio", "run", "attach"), NamespacesDir: j("crio", "run", "ns"),
			},
		},
	}
}

func render(t *testing.T, p Params) Files {
	t.Helper()
	f, err := Render(p)
	if err != nil {
		t.Fatalf("Render(%s): %v", p.Lab, err)
	}
	return f
}

// TestBlockedList: the union of what both labs blocked before the list was shared, and the
// rest of the same families.
func TestBlockedList(t *testing.T) {
	got, err := Blocked()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, r := range got {
		have[r] = true
	}
	for _, want := range []string{
		"docker.io", "index.docker.io", "registry-1.docker.io", "quay.io", "registry.k8s.io", "k8s.gcr.io",
		"gcr.io", "ghcr.io", "public.ecr.aws", "mcr.microsoft.com", "registry.fedoraproject.org",
		"registry.access.redhat.com", "registry.redhat.io",
		"icr.io", "us.icr.io", "uk.icr.io", "de.icr.io", "au.icr.io", "jp.icr.io", "jp2.icr.io", "fr2.icr.io",
		"ca.icr.io", "br.icr.io", "es.icr.io", "*.icr.io", "*.docker.io", "*.gcr.io",
	} {
		if !have[want] {
			t.Errorf("%s is not blocked", want)
		}
	}
}

func TestParseBlocked(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
		want              []string
	}{
		{name: "comments and blanks", in: "# c\n\nquay.io # the quay\n*.icr.io\n", want: []string{"quay.io", "*.icr.io"}},
		{name: "port", in: "quay.io:443\n", wantErr: "line 1"},
		{name: "path", in: "quay.io/x\n", wantErr: "not a registry host"},
		{name: "scheme", in: "https://quay.io\n", wantErr: "not a registry host"},
		{name: "upper case", in: "Quay.io\n", wantErr: "not a registry host"},
		{name: "one label", in: "localhost\n", wantErr: "not a registry host"},
		{name: "inner wildcard", in: "a.*.io\n", wantErr: "not a registry host"},
		{name: "twice", in: "quay.io\n\nquay.io\n", wantErr: "line 3: \"quay.io\" is listed twice"},
		{name: "empty", in: "# nothing\n", wantErr: "lists no registry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseBlocked([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestRenderRejectsBadParams(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Params)
		wantErr string
	}{
		{"no registry", func(p *Params) { p.Registry = "" }, "Registry is empty"},
		{"registry with a path", func(p *Params) { p.Registry = "r:5000/x" }, "not a registry host"},
		{"quote in a path", func(p *Params) { p.CRIO.KeysPath = "/k\"eys" }, "has a quote"},
		{"newline in an alias", func(p *Params) { p.RegistryAliases = []string{"a\nb"} }, "non-printable"},
		{"relative keys path", func(p *Params) { p.CRIO.KeysPath = "keys" }, "not an absolute path"},
		{"no keys path", func(p *Params) { p.CRIO.KeysPath = "" }, "CRIO.KeysPath is empty"},
		{"no plugin dirs", func(p *Params) { p.CRIO.PluginDirs = nil }, "PluginDirs is empty"},
		{"cgroup manager", func(p *Params) { p.CRIO.CgroupManager = "cgroupv3" }, "neither systemd nor cgroupfs"},
		{"half a state", func(p *Params) { p.CRIO.State.ExitsDir = "" }, "CRIO.State.ExitsDir is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := nodeParams("/w")
			tt.mutate(&p)
			if _, err := Render(p); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Render error = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Kind(KindInput{Registry: "r:5000"}); err == nil {
		t.Error("Kind without a pause version succeeded")
	}
}

// TestRegistriesConfAsCRIOReadsIt reads each variant's registries.conf with containers/image,
// the library CRI-O resolves pulls with.
func TestRegistriesConfAsCRIOReadsIt(t *testing.T) {
	blocked, err := Blocked()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []Params{kindParams(t), nodeParams("/w")} {
		t.Run(p.Lab, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "registries.conf")
			if err := os.WriteFile(conf, render(t, p).RegistriesConf, 0o644); err != nil {
				t.Fatal(err)
			}
			sys := &types.SystemContext{SystemRegistriesConfPath: conf, SystemRegistriesConfDirPath: filepath.Join(dir, "none")}
			find := func(ref string) *sysregistriesv2.Registry {
				t.Helper()
				r, err := sysregistriesv2.FindRegistry(sys, ref)
				if err != nil {
					t.Fatalf("registries.conf rejected by containers/image: %v", err)
				}
				return r
			}
			for _, b := range append(blocked, p.Preloaded...) {
				ref := strings.Replace(b, "*", "sub", 1) + "/ns/img:tag"
				if r := find(ref); r == nil || !r.Blocked {
					t.Errorf("%s is not blocked: %+v", ref, r)
				}
			}
			for _, prefix := range p.labRegistries() {
				r := find(prefix + "/keysync/fixture:v1")
				if r == nil || r.Blocked || !r.Insecure || r.Location != p.Registry {
					t.Errorf("%s resolves to %+v, want insecure %s", prefix, r, p.Registry)
				}
			}
			if mode, err := sysregistriesv2.GetShortNameMode(sys); err != nil || mode != types.ShortNameModeEnforcing {
				t.Errorf("short-name mode %v, %v; want enforcing", mode, err)
			}
			if u, err := sysregistriesv2.UnqualifiedSearchRegistries(sys); err != nil || len(u) != 0 {
				t.Errorf("unqualified search registries %v, %v; want none", u, err)
			}
		})
	}
}

// TestPolicyAsCRIOReadsIt parses each variant's policy with containers/image.
func TestPolicyAsCRIOReadsIt(t *testing.T) {
	for _, p := range []Params{kindParams(t), nodeParams("/w")} {
		t.Run(p.Lab, func(t *testing.T) {
			pol, err := signature.NewPolicyFromBytes(render(t, p).Policy)
			if err != nil {
				t.Fatalf("policy rejected by containers/image: %v", err)
			}
			if len(pol.Transports["docker"]) != len(p.accepted()) {
				t.Errorf("docker scopes %v, want %v", pol.Transports["docker"], p.accepted())
			}
		})
	}
}

func TestDropIn(t *testing.T) {
	tests := []struct {
		p    Params
		key  string
		want any
	}{
		{kindParams(t), "crio.runtime.decryption_keys_path", "/etc/crio/keys"},
		{kindParams(t), "crio.api.listen", "/var/run/crio/crio.sock"},
		{kindParams(t), "crio.runtime.cgroup_manager", "systemd"},
		{kindParams(t), "crio.image.pause_image", "registry.k8s.io/pause:3.10.1"},
		{kindParams(t), "crio.image.signature_policy", "/etc/containers/policy.json"},
		{kindParams(t), "crio.runtime.runtimes.runc.runtime_path", "/usr/local/bin/keysync-runtime-wrapper"},
		{kindParams(t), "crio.root", nil},
		{nodeParams("/w"), "crio.root", "/w/crio/storage"},
		{nodeParams("/w"), "crio.runtime.decryption_keys_path", "/w/keys"},
		{nodeParams("/w"), "crio.image.insecure_registries", []any{"127.0.0.1:41234"}},
		{nodeParams("/w"), "crio.network.plugin_dirs", []any{"/usr/lib/cni"}},
		{nodeParams("/w"), "crio.image.pause_command", ""},
		{nodeParams("/w"), "crio.nri.enable_nri", false},
	}
	for _, tt := range tests {
		t.Run(tt.p.Lab+"/"+tt.key, func(t *testing.T) {
			m, err := flatDropIn(render(t, tt.p).DropIn)
			if err != nil {
				t.Fatal(err)
			}
			if got := m[tt.key]; !equalValue(got, tt.want) {
				t.Fatalf("%s = %#v, want %#v", tt.key, got, tt.want)
			}
		})
	}
}

func equalValue(a, b any) bool {
	var x, y bytes.Buffer
	_ = toml.NewEncoder(&x).Encode(map[string]any{"v": a})
	_ = toml.NewEncoder(&y).Encode(map[string]any{"v": b})
	return x.String() == y.String()
}

func TestCompareLabs(t *testing.T) {
	if err := Compare(kindParams(t), nodeParams("/w")); err != nil {
		t.Fatalf("the kind and node variants differ where they must not:\n%v", err)
	}
}

// TestCompareCatchesDrift tampers with the node variant's rendered files the way a second copy
// would drift, and expects Compare's check to say where.
func TestCompareCatchesDrift(t *testing.T) {
	replace := func(field func(*Files) *[]byte, old, new string) func(*testing.T, *Files) {
		return func(t *testing.T, f *Files) {
			b := field(f)
			if !bytes.Contains(*b, []byte(old)) {
				t.Fatalf("rendered file lacks %q", old)
			}
			*b = bytes.Replace(*b, []byte(old), []byte(new), 1)
		}
	}
	dropIn := func(f *Files) *[]byte { return &f.DropIn }
	regs := func(f *Files) *[]byte { return &f.RegistriesConf }
	pol := func(f *Files) *[]byte { return &f.Policy }
	tests := []struct {
		name    string
		tamper  func(*testing.T, *Files)
		wantErr string
	}{
		{"a common drop-in key changes", replace(dropIn, "drop_infra_ctr = true", "drop_infra_ctr = false"), "crio.runtime.drop_infra_ctr differs"},
		{"a drop-in key only one lab has", replace(dropIn, "[crio.metrics]\n", "[crio.metrics]\nmetrics_port = 9090\n"), "crio.metrics.metrics_port differs"},
		{"decryption_keys_path unset", replace(dropIn, "decryption_keys_path =", "# decryption_keys_path ="), "decryption_keys_path is not set in the node lab"},
		{"a blocked registry dropped", replace(regs, "prefix = \"quay.io\"", "prefix = \"quay.example\""), "registries.conf blocks"},
		{"a registry unblocked", replace(regs, "location = \"quay.io\"\nblocked = true", "location = \"quay.io\"\nblocked = false"), "neither the lab registry nor blocked"},
		{"short names resolve", replace(regs, "short-name-mode = \"enforcing\"", "short-name-mode = \"permissive\""), "short names resolve"},
		{"the lab registry blocked", replace(regs, "insecure = true\nblocked = false", "insecure = true\nblocked = true"), "want insecure, not blocked"},
		{"the policy accepts more", replace(pol, "\"docker\": {", "\"docker\": {\n\"quay.io\": [{\"type\": \"insecureAcceptAnything\"}],"), "accepts docker scopes"},
		{"the policy's default", replace(pol, "\"reject\"", "\"insecureAcceptAnything\""), "default is"},
		{"another transport", replace(pol, "\"oci-archive\"", "\"oci\""), "policy.json differs"},
	}
	a, b := kindParams(t), nodeParams("/w")
	fa := render(t, a)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fb := render(t, b)
			tt.tamper(t, &fb)
			err := compareFiles(a, fa, b, fb)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("compare error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestRegistryNamesAsCRIOReadsThem: another host name of the lab registry is its own
// location (a rewrite would drop the pull's credentials), plain HTTP, accepted by the policy;
// the auth files go into the drop-in only when set.
func TestRegistryNamesAsCRIOReadsThem(t *testing.T) {
	p, err := Kind(KindInput{Registry: "kind-registry:5000", RegistryAliases: []string{"127.0.0.1:5001"},
		RegistryNames: []string{"icr.keysync.test:5000"}, GlobalAuthFile: "/etc/crio/lab-registry-auth.json", PauseVersion: "3.10.1"})
	if err != nil {
		t.Fatal(err)
	}
	f := render(t, p)
	path := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(path, f.RegistriesConf, 0o644); err != nil {
		t.Fatal(err)
	}
	sys := &types.SystemContext{SystemRegistriesConfPath: path, SystemRegistriesConfDirPath: "/nonexistent"}
	for _, tt := range []struct{ ref, location string }{
		{"icr.keysync.test:5000/x", "icr.keysync.test:5000"},
		{"127.0.0.1:5001/x", "kind-registry:5000"},
	} {
		reg, err := sysregistriesv2.FindRegistry(sys, tt.ref)
		if err != nil || reg == nil {
			t.Fatalf("FindRegistry(%s): %v %v", tt.ref, reg, err)
		}
		if reg.Location != tt.location || !reg.Insecure || reg.Blocked {
			t.Errorf("%s: location %s insecure %v blocked %v, want %s, insecure, not blocked", tt.ref, reg.Location, reg.Insecure, reg.Blocked, tt.location)
		}
	}
	if !bytes.Contains(f.DropIn, []byte(`global_auth_file = "/etc/crio/lab-registry-auth.json"`)) ||
		!bytes.Contains(f.DropIn, []byte(`"icr.keysync.test:5000"`)) {
		t.Errorf("drop-in lacks global_auth_file or the name among insecure_registries:\n%s", f.DropIn)
	}
	if n := nodeParams(t.TempDir()); bytes.Contains(render(t, n).DropIn, []byte("auth_file")) {
		t.Error("a lab without auth files gets one in its drop-in")
	}
	if err := Compare(p, nodeParams(t.TempDir())); err != nil {
		t.Errorf("Compare with registry names and a global auth file: %v", err)
	}
}

func TestHostsFile(t *testing.T) {
	base := "127.0.0.1\tlocalhost\n# comment iam.cloud.ibm.com\n10.0.0.9 iam.cloud.ibm.com other # theirs\n10.0.0.8 US-SOUTH.kms.cloud.ibm.com.\n\n::1 localhost ip6-localhost"
	got, err := HostsFile([]byte(base), "127.44.0.7")
	if err != nil {
		t.Fatal(err)
	}
	want := "127.0.0.1\tlocalhost\n# comment iam.cloud.ibm.com\n10.0.0.9 other # theirs\n\n::1 localhost ip6-localhost\n" +
		"# keysync lab: IAM's and Key Protect's public names are the lab's mockkp\n" +
		"127.44.0.7 iam.cloud.ibm.com private.iam.cloud.ibm.com us-south.kms.cloud.ibm.com private.us-south.kms.cloud.ibm.com\n"
	if string(got) != want {
		t.Errorf("HostsFile =\n%s\nwant\n%s", got, want)
	}
	if !strings.HasPrefix(KPPublicURL, "https://") || !slices.Contains(KPPublicHosts(), strings.TrimPrefix(KPPublicURL, "https://")) {
		t.Errorf("KPPublicURL %s is not https on one of the public hosts", KPPublicURL)
	}
	if u, err := url.Parse(kpkey.DefaultTokenURL); err != nil || !slices.Contains(KPPublicHosts(), u.Hostname()) {
		t.Errorf("the public hosts lack the official client's default token endpoint %s", kpkey.DefaultTokenURL)
	}
	for _, bad := range []string{"", "mockkp", "300.1.1.1"} {
		if _, err := HostsFile(nil, bad); err == nil {
			t.Errorf("HostsFile(%q) = nil error", bad)
		}
	}
}
