// The feature list. Each area's features live in area_<area>.go; the helpers they share in
// scope.go (per-feature state and key Secrets), waits.go (the keys tree on every node),
// pulls.go, kp.go (Key Protect settings), cluster.go (the addon's pods and capabilities) and
// pods.go (workload Pods).

package conformance

// keyDataKey is the data entry name the suites use in key Secrets.
const keyDataKey = "key.pem"

// fixtureOnceArg makes a fixture's program print its marker and exit (fixtures/cmd/marker).
const fixtureOnceArg = "-once"

// Features returns every feature in suite order, each with fresh state (call it once per
// run). Every feature ends with the hygiene assessment.
func Features() []Feature {
	fs := []Feature{
		featureNoKey(),
		featureKeySecret(),
		featureKPKey(),
		featureRevocation(),
		featureRotation(),
		featureBadInput(),
		featureHygiene(),
		featureAddon(),
		featurePod(),
		featureNetwork(),
		featureIsolation(),
		featureRegistryLocks(),
		featureRegistryRotation(),
		featureResilience(), // disruptive: last
	}
	for i := range fs {
		fs[i].Assess = append(fs[i].Assess, Step{Name: "hygiene: keys tree holds only usable keys and a plain image pulls", Fn: assessHygiene})
	}
	return fs
}

// FeaturesIn returns the features of one area.
func FeaturesIn(area Area) []Feature {
	var out []Feature
	for _, f := range Features() {
		if f.Area == area {
			out = append(out, f)
		}
	}
	return out
}
