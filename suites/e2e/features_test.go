package e2e

import (
	"testing"

	"github.com/keysync-dev/keysync/suites/conformance"
)

// One test per area, in suite order; each runs that area's features.

func TestPlain(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaPlain)...)...)
}

func TestKP(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaKP)...)...)
}

func TestRevocation(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaRevocation)...)...)
}

func TestRotation(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaRotation)...)...)
}

func TestBadInput(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaBadInput)...)...)
}

func TestHygiene(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaHygiene)...)...)
}

// The cluster areas: they skip, naming the lab they need, on the node lab.

func TestAddon(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaAddon)...)...)
}

func TestPod(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaPod)...)...)
}

func TestNetwork(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaNetwork)...)...)
}

func TestIsolation(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaIsolation)...)...)
}

func TestResilience(t *testing.T) {
	testenv.Test(t, conformance.E2E(conformance.FeaturesIn(conformance.AreaResilience)...)...)
}
