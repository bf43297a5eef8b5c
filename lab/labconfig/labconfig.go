// Package labconfig is the one source of the configuration every keysync lab gives its nodes:
// the outside registries no node may reach, registries.conf, the signature policy, CRI-O's
// drop-in and the mockkp seed. The files are embedded once (files/); Render fills in what a lab
// truly owns (its registry's address, paths on the host or on the node, the pause image, the
// cgroup manager) and Compare proves that two labs' files differ only there.
//
// The node lab (lab/nodelab) renders into its work dir on every up; the kind node image
// (lab/kindlab, hack/build-node-image.sh) bakes the kind variant in at build time.
package labconfig

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"text/template"
	"unicode"
)

//go:embed files/crio.conf.tmpl files/registries.conf.tmpl files/policy.json files/blocked-registries.txt
var embedded embed.FS

// Params are what one lab owns. Everything else in the rendered files is the same in every lab.
type Params struct {
	// Lab names the variant in the files' header comments ("node", "kind").
	Lab string
	// Registry is the lab registry as the nodes pull from it (host:port, plain HTTP).
	Registry string
	// RegistryAliases are other prefixes that CRI-O rewrites to Registry (the kind lab's host
	// port). A rewrite drops the pull's explicit credentials (containers/image sends them only
	// to the host the image names), so with an authenticated registry they are for pushes.
	RegistryAliases []string
	// RegistryNames are other host names that reach the lab registry themselves (they resolve
	// to it inside the lab, like the several host names of one region's registry): plain
	// HTTP, no rewrite, so a pull through them carries its credentials.
	RegistryNames []string
	// Preloaded are registries whose images the node image already holds (the kind lab's
	// control-plane images). The signature policy accepts them, because CRI-O checks it when it
	// creates a container too; registries.conf still blocks every pull from them.
	Preloaded []string
	// CRIO are CRI-O's lab-specific settings.
	CRIO CRIO
}

// CRIO are the drop-in's lab-specific values. Every path is absolute.
type CRIO struct {
	// Listen is CRI-O's CRI socket path.
	Listen string
	// KeysPath is decryption_keys_path, the root of the keys tree.
	KeysPath string
	// SignaturePolicy is where the rendered policy.json is installed.
	SignaturePolicy string
	// PauseImage is the pause image reference; the lab pushes or preloads it.
	PauseImage string
	// GlobalAuthFile is CRI-O's global_auth_file: credentials for pulls that carry none
	// (containers/image also falls back to it when a registries.conf rewrite drops a pull's
	// credentials). A lab writes it for its own internal registry name only, never for the
	// names the suites pull with; empty: none.
	GlobalAuthFile string
	// PauseImageAuthFile is a containers-auth.json CRI-O pulls the pause image with (a lab
	// whose registry requires credentials and serves the pause image); empty: none.
	PauseImageAuthFile string
	// CgroupManager is "systemd" (a kubelet with the systemd driver) or "cgroupfs".
	CgroupManager string
	// PinnsPath is CRI-O's pinns binary.
	PinnsPath string
	// RuntimePath is runc or keysync-runtime-wrapper; RuntimeRoot is its state root.
	RuntimePath, RuntimeRoot string
	// MonitorPath is conmon (the same in every lab).
	MonitorPath string
	// NetworkDir holds the CNI config; PluginDirs hold the CNI plugins.
	NetworkDir string
	PluginDirs []string
	// State moves CRI-O's own storage and state under a work dir; nil keeps CRI-O's defaults
	// (a node of its own).
	State *CRIOState
}

// CRIOState are CRI-O's storage and state paths.
type CRIOState struct {
	Root, RunRoot, LogDir                              string
	VersionFile, VersionFilePersist, CleanShutdownFile string
	ExitsDir, AttachSocketDir, NamespacesDir           string
}

// Files are one lab's rendered files; where they are installed is the lab's business.
type Files struct {
	// DropIn is CRI-O's drop-in (crio.conf.d/).
	DropIn []byte
	// RegistriesConf is containers-registries.conf(5).
	RegistriesConf []byte
	// Policy is containers-policy.json(5), installed at CRIO.SignaturePolicy.
	Policy []byte
}

// Render validates p and renders the lab's files.
func Render(p Params) (Files, error) {
	if err := p.validate(); err != nil {
		return Files{}, fmt.Errorf("invalid lab configuration for the %q lab: %w", p.Lab, err)
	}
	blocked, err := Blocked()
	if err != nil {
		return Files{}, err
	}
	data := struct {
		Params
		Blocked            []string
		InsecureRegistries []string
	}{Params: p, Blocked: blocked, InsecureRegistries: append([]string{p.Registry}, p.RegistryNames...)}
	var f Files
	if f.DropIn, err = execute("crio.conf.tmpl", data); err != nil {
		return Files{}, err
	}
	if f.RegistriesConf, err = execute("registries.conf.tmpl", data); err != nil {
		return Files{}, err
	}
	if f.Policy, err = policy(p); err != nil {
		return Files{}, err
	}
	return f, nil
}

// execute renders one embedded template.
func execute(name string, data any) ([]byte, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(template.FuncMap{
		"q":        strconv.Quote,
		"list":     tomlList,
		"wildcard": isWildcard,
	}).ParseFS(embedded, "files/"+name)
	if err != nil {
		return nil, fmt.Errorf("failed to parse %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("failed to render %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// tomlList renders strings as a TOML array of basic strings. The values were validated:
// printable, no quote or backslash, so strconv.Quote is TOML's quoting too.
func tomlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// policyReq is one requirement of containers-policy.json(5).
type policyReq struct {
	Type string `json:"type"`
}

// policyFile is the part of containers-policy.json(5) the labs use.
type policyFile struct {
	Default    []policyReq                       `json:"default"`
	Transports map[string]map[string][]policyReq `json:"transports"`
}

// policy renders the embedded policy with the lab registry, its aliases and the preloaded
// registries accepted for the docker transport.
func policy(p Params) ([]byte, error) {
	raw, err := embedded.ReadFile("files/policy.json")
	if err != nil {
		return nil, fmt.Errorf("failed to read the embedded policy: %w", err)
	}
	var pol policyFile
	if err := json.Unmarshal(raw, &pol); err != nil {
		return nil, fmt.Errorf("failed to decode the embedded policy: %w", err)
	}
	docker := pol.Transports["docker"]
	if docker == nil {
		return nil, fmt.Errorf("the embedded policy has no docker transport")
	}
	for _, scope := range p.accepted() {
		docker[scope] = []policyReq{{Type: "insecureAcceptAnything"}}
	}
	out, err := json.MarshalIndent(pol, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode the signature policy: %w", err)
	}
	return append(out, '\n'), nil
}

// labRegistries are the registry, its aliases and its other names.
func (p Params) labRegistries() []string {
	return append(append([]string{p.Registry}, p.RegistryAliases...), p.RegistryNames...)
}

// accepted are the docker scopes the policy accepts.
func (p Params) accepted() []string { return append(p.labRegistries(), p.Preloaded...) }

func (p Params) validate() error {
	var errs []string
	check := func(name, v string, abs bool) {
		switch {
		case v == "":
			errs = append(errs, name+" is empty")
		case !plain(v):
			errs = append(errs, fmt.Sprintf("%s %q has a quote, a backslash or a non-printable character", name, v))
		case abs && !path.IsAbs(v):
			errs = append(errs, fmt.Sprintf("%s %q is not an absolute path", name, v))
		}
	}
	host := func(name, v string) {
		check(name, v, false)
		if strings.ContainsAny(v, "/@ ") || isWildcard(v) {
			errs = append(errs, fmt.Sprintf("%s %q is not a registry host[:port]", name, v))
		}
	}
	check("Lab", p.Lab, false)
	host("Registry", p.Registry)
	for i, r := range p.RegistryAliases {
		host(fmt.Sprintf("RegistryAliases[%d]", i), r)
	}
	for i, r := range p.RegistryNames {
		host(fmt.Sprintf("RegistryNames[%d]", i), r)
	}
	for i, r := range p.Preloaded {
		host(fmt.Sprintf("Preloaded[%d]", i), r)
	}
	c := p.CRIO
	check("CRIO.Listen", c.Listen, true)
	check("CRIO.KeysPath", c.KeysPath, true)
	check("CRIO.SignaturePolicy", c.SignaturePolicy, true)
	check("CRIO.PauseImage", c.PauseImage, false)
	if c.GlobalAuthFile != "" {
		check("CRIO.GlobalAuthFile", c.GlobalAuthFile, true)
	}
	if c.PauseImageAuthFile != "" {
		check("CRIO.PauseImageAuthFile", c.PauseImageAuthFile, true)
	}
	check("CRIO.PinnsPath", c.PinnsPath, true)
	check("CRIO.RuntimePath", c.RuntimePath, true)
	check("CRIO.RuntimeRoot", c.RuntimeRoot, true)
	check("CRIO.MonitorPath", c.MonitorPath, true)
	check("CRIO.NetworkDir", c.NetworkDir, true)
	if len(c.PluginDirs) == 0 {
		errs = append(errs, "CRIO.PluginDirs is empty")
	}
	for i, d := range c.PluginDirs {
		check(fmt.Sprintf("CRIO.PluginDirs[%d]", i), d, true)
	}
	if c.CgroupManager != "systemd" && c.CgroupManager != "cgroupfs" {
		errs = append(errs, fmt.Sprintf("CRIO.CgroupManager %q is neither systemd nor cgroupfs", c.CgroupManager))
	}
	if s := c.State; s != nil {
		for _, f := range []struct{ name, v string }{
			{"Root", s.Root}, {"RunRoot", s.RunRoot}, {"LogDir", s.LogDir}, {"VersionFile", s.VersionFile},
			{"VersionFilePersist", s.VersionFilePersist}, {"CleanShutdownFile", s.CleanShutdownFile},
			{"ExitsDir", s.ExitsDir}, {"AttachSocketDir", s.AttachSocketDir}, {"NamespacesDir", s.NamespacesDir},
		} {
			check("CRIO.State."+f.name, f.v, true)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// plain reports whether s can be written as a TOML or JSON string without escapes.
func plain(s string) bool {
	for _, r := range s {
		if r == '"' || r == '\\' || r > unicode.MaxASCII || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}
