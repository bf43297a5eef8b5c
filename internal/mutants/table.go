// Package mutants proves the conformance suite: it runs the suite against deliberately broken
// variants of the reference synchronizer (syncer/internal/mutant, built with the
// keysync_mutants tag) on a node lab and reports which ones the suite kills. See README.md.
package mutants

import (
	"github.com/keysync-dev/keysync/suites/conformance"
)

// Mutant is one broken synchronizer and where the suite should catch it.
type Mutant struct {
	// Name is the --mutant value (syncer/internal/mutant).
	Name string
	// Defect says what is broken, for the table.
	Defect string
	// Areas are the conformance areas run against it (the ones that can see the defect).
	Areas []conformance.Area
	// Expect names the features expected to fail (their Feature.Name).
	Expect []string
}

// Feature names the table refers to (suites/conformance).
const (
	featKeySecret  = "a key Secret makes its encrypted image pull"
	featMultiKey   = "every key of a multi-key Secret lands, normalised"
	featKP         = "a kp-key Secret is unwrapped once per node and its image pulls"
	featKPOutage   = "a Key Protect outage removes no synced key"
	featRevocation = "deleting a key Secret revokes new pulls"
	featRotation   = "rotating a key Secret replaces the key file"
	featBadInput   = "bad Secrets are rejected, write nothing and break no other key"
	featNoKey      = "without its key an encrypted image does not pull"
	featForeign    = "key files the synchronizer did not write stay in the keys tree"
	featSymlink    = "a symlink planted at a key file's path is replaced, never followed"
	featLatency    = "key Secrets land on every node within the p99 sync latency"
)

// Table lists every mutant, in run order.
var Table = []Mutant{
	{Name: "mode-0644", Defect: "key files written 0644", Areas: areas(conformance.AreaPlain), Expect: []string{featKeySecret}},
	{Name: "no-validation", Defect: "no validation: a public key or text lands in the tree", Areas: areas(conformance.AreaBadInput), Expect: []string{featBadInput}},
	{Name: "sec1-as-is", Defect: "SEC1 EC PEM written as-is (CRI-O rejects it)", Areas: areas(conformance.AreaPlain), Expect: []string{featMultiKey}},
	{Name: "keep-on-delete", Defect: "never removes a deleted Secret's key", Areas: areas(conformance.AreaRevocation), Expect: []string{featRevocation}},
	{Name: "ignore-kp-key", Defect: "ignores kp-key Secrets", Areas: areas(conformance.AreaKP), Expect: []string{featKP}},
	{Name: "unwrap-every-sync", Defect: "unwraps kp-keys again on every resync", Areas: areas(conformance.AreaKP), Expect: []string{featKP}},
	{Name: "poll-60s", Defect: "picks changes up 60 s late (polls)", Areas: areas(conformance.AreaPlain, conformance.AreaLatency), Expect: []string{featKeySecret, featMultiKey, featLatency}},
	{Name: "no-events", Defect: "records no Events", Areas: areas(conformance.AreaPlain), Expect: []string{featKeySecret}},
	{Name: "ignore-updates", Defect: "ignores Secret updates: a rotated key never lands", Areas: areas(conformance.AreaRotation), Expect: []string{featRotation}},
	{Name: "reject-wipes", Defect: "a rejected Secret removes every other key", Areas: areas(conformance.AreaBadInput), Expect: []string{featBadInput}},
	{Name: "temp-left-in-tree", Defect: "stages in the keys tree and leaves a partial temp file after a crash", Areas: areas(conformance.AreaPlain), Expect: []string{featKeySecret, featMultiKey, featNoKey}},
	{Name: "drop-second-key", Defect: "drops the second key of a two-key Secret", Areas: areas(conformance.AreaPlain), Expect: []string{featMultiKey}},
	{Name: "in-place", Defect: "writes the key file in place, no staging (a partial key is visible)", Areas: areas(conformance.AreaRotation), Expect: []string{featRotation}},
	{Name: "delete-on-outage", Defect: "removes a synced key when Key Protect fails transiently", Areas: areas(conformance.AreaKP), Expect: []string{featKPOutage}},
	{Name: "remove-foreign", Defect: "removes files it did not write from its keys directory", Areas: areas(conformance.AreaForeign), Expect: []string{featForeign}},
	{Name: "follow-symlink", Defect: "writes a key through a symlink planted at its file's path (to the link's target, outside the tree)", Areas: areas(conformance.AreaForeign), Expect: []string{featSymlink}},
}

func areas(a ...conformance.Area) []conformance.Area { return a }
