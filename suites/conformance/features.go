// The feature list. Each area's features live in area_<area>.go; the helpers they share in
// scope.go (per-feature state and key Secrets), waits.go (the keys tree on every node),
// pulls.go, kp.go (Key Protect settings), cluster.go (the addon's pods and capabilities) and
// pods.go (workload Pods).

package conformance

// keyDataKey is the data entry name the suites use in key Secrets.
const keyDataKey = "key.pem"

// fixtureOnceArg makes a fixture's program print its marker and exit (fixtures/cmd/marker).
const fixtureOnceArg = "-once"

// hygieneStepName and keyModesStepName name the assessments every feature ends with.
const (
	hygieneStepName  = "hygiene: keys tree holds only keys CRI-O can use and a plain image pulls"
	keyModesStepName = "hygiene: the synchronizer's key files have mode 0600"
)

// Features returns every feature in suite order, each with fresh state (call it once per
// run). Every feature ends with the hygiene assessments: the required one (nothing CRI-O
// cannot read in the tree, a plain image pulls) and the recommended one (key files 0600); both
// run whatever happened before them.
func Features() []Feature {
	fs := []Feature{
		featureNoKey(),
		featureKeySecret(),
		featureMultiKey(),
		featureKPKey(),
		featureKPUnwrapOutage(),
		featureRevocation(),
		featureRotation(),
		featureBadInput(),
		featureHygiene(),
		featureForeignFiles(),
		featureForeignSymlink(),
		featureSyncLatency(),
		featureAddon(),
		featurePod(),
		featureNetwork(),
		featureIsolation(),
		featureAtRestEnvelope(),
		featureAtRestRewrite(),
		featureAtRestRotation(),
		featureAtRestOutage(),
		featureRegistryLocks(),
		featureRegistryRotation(),
		featureFixturePKCS7(),
		featureFixtureMultiRecipient(),
		featureFixturePartlyEncrypted(),
		featureResilience(), // disruptive: last but the faults
		featureKPErrors(),
		featureKPOutage(),
		featureKillDuringBurst(),  // disruptive
		featureAPIServerRestart(), // disruptive
	}
	for i := range fs {
		fs[i].Assess = append(fs[i].Assess,
			Step{Name: hygieneStepName, Fn: assessHygiene, Profile: ProfileRequired, Independent: true},
			Step{Name: keyModesStepName, Fn: assessKeyModes, Profile: ProfileRecommended, Independent: true})
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
