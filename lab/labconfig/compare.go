package labconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"

	"github.com/BurntSushi/toml"
)

// labSpecific are the drop-in keys whose values a lab owns (Params.CRIO), mapped to whether
// every lab must set them. Every other key must be the same in every lab.
func labSpecific() map[string]bool {
	return map[string]bool{
		// Set in every lab, to the lab's own value.
		"crio.api.listen":                         true,
		"crio.runtime.cgroup_manager":             true,
		"crio.runtime.decryption_keys_path":       true,
		"crio.runtime.pinns_path":                 true,
		"crio.runtime.runtimes.runc.runtime_path": true,
		"crio.runtime.runtimes.runc.runtime_root": true,
		"crio.image.pause_image":                  true,
		"crio.image.signature_policy":             true,
		"crio.image.insecure_registries":          true,
		"crio.network.network_dir":                true,
		"crio.network.plugin_dirs":                true,
		// Only a lab that pushes its pause image to its authenticated registry sets it.
		"crio.image.pause_image_auth_file": false,
		"crio.image.global_auth_file":      false,
		// CRIO.State: only a lab sharing its host moves them.
		"crio.root":                                false,
		"crio.runroot":                             false,
		"crio.log_dir":                             false,
		"crio.version_file":                        false,
		"crio.version_file_persist":                false,
		"crio.clean_shutdown_file":                 false,
		"crio.runtime.container_exits_dir":         false,
		"crio.runtime.container_attach_socket_dir": false,
		"crio.runtime.namespaces_dir":              false,
	}
}

// Compare renders two labs' files and fails where they differ outside the declared
// lab-specific parameters (the registry's names, the preloaded registries' policy scopes, the
// drop-in keys of Params.CRIO), or where either breaks the rules every lab keeps: short names
// never resolve, exactly the blocked list is blocked, the lab registry is reachable, the policy
// rejects by default and accepts only the lab's registries.
func Compare(a, b Params) error {
	fa, err := Render(a)
	if err != nil {
		return err
	}
	fb, err := Render(b)
	if err != nil {
		return err
	}
	return compareFiles(a, fa, b, fb)
}

func compareFiles(a Params, fa Files, b Params, fb Files) error {
	var errs []error
	da, err := flatDropIn(fa.DropIn)
	if err != nil {
		return fmt.Errorf("%s lab: %w", a.Lab, err)
	}
	db, err := flatDropIn(fb.DropIn)
	if err != nil {
		return fmt.Errorf("%s lab: %w", b.Lab, err)
	}
	spec := labSpecific()
	for _, k := range unionKeys(da, db) {
		va, inA := da[k]
		vb, inB := db[k]
		required, own := spec[k]
		switch {
		case own && required && !inA:
			errs = append(errs, fmt.Errorf("drop-in: %s is not set in the %s lab", k, a.Lab))
		case own && required && !inB:
			errs = append(errs, fmt.Errorf("drop-in: %s is not set in the %s lab", k, b.Lab))
		case own:
		case !reflect.DeepEqual(va, vb):
			errs = append(errs, fmt.Errorf("drop-in: %s differs: %v in the %s lab, %v in the %s lab", k, show(va, inA), a.Lab, show(vb, inB), b.Lab))
		}
	}

	ra, err := checkRegistries(a, fa.RegistriesConf)
	errs = append(errs, err)
	rb, err := checkRegistries(b, fb.RegistriesConf)
	errs = append(errs, err)
	if ra != nil && rb != nil && !reflect.DeepEqual(*ra, *rb) {
		errs = append(errs, fmt.Errorf("registries.conf differs outside the lab registry: %s lab %+v, %s lab %+v", a.Lab, *ra, b.Lab, *rb))
	}

	pa, err := checkPolicy(a, fa.Policy)
	errs = append(errs, err)
	pb, err := checkPolicy(b, fb.Policy)
	errs = append(errs, err)
	if pa != nil && pb != nil && !reflect.DeepEqual(*pa, *pb) {
		errs = append(errs, fmt.Errorf("policy.json differs outside the lab's registries: %s lab %+v, %s lab %+v", a.Lab, *pa, b.Lab, *pb))
	}
	return errors.Join(errs...)
}

func show(v any, ok bool) string {
	if !ok {
		return "unset"
	}
	return fmt.Sprintf("%#v", v)
}

// flatDropIn decodes a drop-in into dotted keys.
func flatDropIn(data []byte) (map[string]any, error) {
	var m map[string]any
	if _, err := toml.Decode(string(data), &m); err != nil {
		return nil, fmt.Errorf("failed to decode the CRI-O drop-in: %w", err)
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			out[prefix+k] = v
		}
	}
	walk("", m)
	return out, nil
}

func unionKeys(a, b map[string]any) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// registryEntry is one [[registry]] of registries.conf.
type registryEntry struct {
	Prefix   string `toml:"prefix"`
	Location string `toml:"location"`
	Insecure bool   `toml:"insecure"`
	Blocked  bool   `toml:"blocked"`
}

// registriesRest is registries.conf without the lab registry's entries.
type registriesRest struct {
	Unqualified []string        `toml:"unqualified-search-registries"`
	ShortName   string          `toml:"short-name-mode"`
	Registry    []registryEntry `toml:"registry"`
}

// checkRegistries checks one lab's registries.conf and returns it without the lab registry's
// entries.
func checkRegistries(p Params, data []byte) (*registriesRest, error) {
	var rc registriesRest
	if _, err := toml.Decode(string(data), &rc); err != nil {
		return nil, fmt.Errorf("%s lab: failed to decode registries.conf: %w", p.Lab, err)
	}
	var errs []error
	if len(rc.Unqualified) != 0 || rc.ShortName != "enforcing" {
		errs = append(errs, fmt.Errorf("%s lab: registries.conf lets short names resolve (%v, %q)", p.Lab, rc.Unqualified, rc.ShortName))
	}
	want, err := Blocked()
	if err != nil {
		return nil, err
	}
	own := p.labRegistries()
	var rest []registryEntry
	var blocked []string
	for _, r := range rc.Registry {
		if slices.Contains(own, r.Prefix) {
			loc := p.Registry
			if slices.Contains(p.RegistryNames, r.Prefix) {
				loc = r.Prefix
			}
			if r.Location != loc || !r.Insecure || r.Blocked {
				errs = append(errs, fmt.Errorf("%s lab: registries.conf entry %+v, want insecure, not blocked, location %s", p.Lab, r, loc))
			}
			own = slices.DeleteFunc(own, func(s string) bool { return s == r.Prefix })
			continue
		}
		if !r.Blocked {
			errs = append(errs, fmt.Errorf("%s lab: registries.conf entry %+v is neither the lab registry nor blocked", p.Lab, r))
		}
		blocked = append(blocked, r.Prefix)
		rest = append(rest, r)
	}
	if len(own) > 0 {
		errs = append(errs, fmt.Errorf("%s lab: registries.conf has no entry for %v", p.Lab, own))
	}
	if !slices.Equal(blocked, want) {
		errs = append(errs, fmt.Errorf("%s lab: registries.conf blocks %v, want %v", p.Lab, blocked, want))
	}
	rc.Registry = rest
	return &rc, errors.Join(errs...)
}

// checkPolicy checks one lab's policy and returns it without the lab's docker scopes.
func checkPolicy(p Params, data []byte) (*policyFile, error) {
	var pol policyFile
	if err := json.Unmarshal(data, &pol); err != nil {
		return nil, fmt.Errorf("%s lab: failed to decode policy.json: %w", p.Lab, err)
	}
	var errs []error
	if !reflect.DeepEqual(pol.Default, []policyReq{{Type: "reject"}}) {
		errs = append(errs, fmt.Errorf("%s lab: policy.json default is %v, want reject", p.Lab, pol.Default))
	}
	accepted := p.accepted()
	var scopes []string
	for scope := range pol.Transports["docker"] {
		scopes = append(scopes, scope)
	}
	sort.Strings(scopes)
	sort.Strings(accepted)
	if !slices.Equal(scopes, accepted) {
		errs = append(errs, fmt.Errorf("%s lab: policy.json accepts docker scopes %v, want exactly %v", p.Lab, scopes, accepted))
	}
	rest := policyFile{Default: pol.Default, Transports: map[string]map[string][]policyReq{}}
	for t, scopes := range pol.Transports {
		if t != "docker" {
			rest.Transports[t] = scopes
		}
	}
	return &rest, errors.Join(errs...)
}
