// Package pullsecret builds and applies the registry pull Secrets of the IBM Cloud Container
// Registry runbook: a Secret of type kubernetes.io/dockerconfigjson with one entry per registry
// host name of a region, user "iamapikey", the API key as password and auth = base64 of
// "iamapikey:<key>" (no trailing newline). Rotating replaces the Secret's content in place and
// reports the pods and ServiceAccounts that reference it. The API key never goes to a log or
// an error; only the rendered Secret carries it.
package pullsecret

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// maxRegionsFileBytes bounds a regions file.
const maxRegionsFileBytes = 1 << 20

// DefaultRegions returns the runbook's region → host-name table, a fresh copy on every call.
//
// Source: the IBM Cloud Kubernetes Service conductors' runbook "Rotating registry pull image
// secrets" (Armada runbooks, Registry; section "Generating image pull secrets for
// armada-secure"), which lists for each region the registry host names one pull secret
// covers: the region's public domain <r>.icr.io, its private endpoint private.<r>.icr.io and
// its deprecated registry.<r>.bluemix.net name; jp also covers the au names and fr2 the de
// names, as the runbook lists them. The public and private domains match the IBM Cloud
// Container Registry documentation's table of local regions ("About Container Registry",
// Regions: Domain name / Private domain name / Deprecated domain name).
func DefaultRegions() map[string][]string {
	return map[string][]string{
		"us":  {"us.icr.io", "private.us.icr.io", "registry.ng.bluemix.net"},
		"au":  {"au.icr.io", "private.au.icr.io", "registry.au-syd.bluemix.net"},
		"jp":  {"jp.icr.io", "private.jp.icr.io", "au.icr.io", "private.au.icr.io", "registry.au-syd.bluemix.net"},
		"fr2": {"fr2.icr.io", "private.fr2.icr.io", "de.icr.io", "private.de.icr.io", "registry.eu-de.bluemix.net"},
		"de":  {"de.icr.io", "private.de.icr.io", "registry.eu-de.bluemix.net"},
		"uk":  {"uk.icr.io", "private.uk.icr.io", "registry.eu-gb.bluemix.net"},
	}
}

// RegionsFile is the format of a regions file (--regions-file), JSON or YAML. It replaces the
// built-in table as a whole:
//
//	regions:
//	  us: [us.icr.io, private.us.icr.io]
//	  lab: ["registry.lab.test:5000"]
//
// Region names are lowercase letters, digits and '-'; each region lists at least one host
// name (host or host:port, no scheme, no path). Unknown fields and duplicate keys are errors.
type RegionsFile struct {
	Regions map[string][]string `json:"regions"`
}

var regionName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ErrUnknownRegion is returned for a region that is not in the table.
var ErrUnknownRegion = errors.New("unknown region")

// LoadRegions reads and validates a regions file (see RegionsFile).
func LoadRegions(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read regions file: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxRegionsFileBytes+1)); err != nil {
		return nil, fmt.Errorf("failed to read regions file %s: %w", path, err)
	}
	if buf.Len() > maxRegionsFileBytes {
		return nil, fmt.Errorf("failed to read regions file %s: larger than %d bytes", path, maxRegionsFileBytes)
	}
	var rf RegionsFile
	// UnmarshalStrict takes JSON or YAML and rejects unknown fields and duplicate keys.
	if err := yaml.UnmarshalStrict(buf.Bytes(), &rf); err != nil {
		return nil, fmt.Errorf("failed to parse regions file %s: %w", path, err)
	}
	if err := ValidateRegions(rf.Regions); err != nil {
		return nil, fmt.Errorf("invalid regions file %s: %w", path, err)
	}
	return rf.Regions, nil
}

// ValidateRegions checks a region table: at least one region, valid region names, at least
// one valid host name per region.
func ValidateRegions(regions map[string][]string) error {
	if len(regions) == 0 {
		return errors.New(`no regions (want {"regions": {"<region>": ["<host>", ...]}})`)
	}
	for _, name := range RegionNames(regions) {
		if !regionName.MatchString(name) {
			return fmt.Errorf("invalid region name %q: want lowercase letters, digits and '-'", name)
		}
		if len(regions[name]) == 0 {
			return fmt.Errorf("region %q lists no host names", name)
		}
		for _, s := range regions[name] {
			if err := ValidateServer(s); err != nil {
				return fmt.Errorf("region %q: %w", name, err)
			}
		}
	}
	return nil
}

// RegionNames returns the table's region names, sorted.
func RegionNames(regions map[string][]string) []string {
	names := make([]string, 0, len(regions))
	for n := range regions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Servers returns the host names of region in regions, sorted and without duplicates.
func Servers(regions map[string][]string, region string) ([]string, error) {
	hosts, ok := regions[region]
	if !ok {
		return nil, fmt.Errorf("%w %q: want one of %s", ErrUnknownRegion, region, strings.Join(RegionNames(regions), ", "))
	}
	return Normalize(hosts)
}

// Normalize validates servers and returns them sorted and without duplicates.
func Normalize(servers []string) ([]string, error) {
	if len(servers) == 0 {
		return nil, errors.New("no registry servers")
	}
	for _, s := range servers {
		if err := ValidateServer(s); err != nil {
			return nil, err
		}
	}
	out := slices.Clone(servers)
	sort.Strings(out)
	return slices.Compact(out), nil
}
