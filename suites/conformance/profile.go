package conformance

import (
	"fmt"
	"time"

	"github.com/keysync-dev/keysync/suites/conformance/report"
)

// Profile says how binding a check is. Every assessment belongs to one:
//
//   - ProfileRequired: what the runbook and CRI-O's documentation promise, observable from
//     outside any implementation (a key Secret gives a key CRI-O uses within the sync
//     deadline, deleting it revokes fresh pulls, rotation replaces the key, nothing CRI-O
//     cannot read appears in the tree, a bad Secret breaks no other key, the runbook's objects
//     exist under the runbook's names).
//   - ProfileRecommended: the reference synchronizer's stronger conventions (its Event reasons
//     KeySynced/KeyRejected/UnwrapFailed, the exact least-privilege Role, one unwrap per
//     Secret version per node, key files 0600).
//
// A run is judged by one profile too (Context.Profile, --profile): under ProfileRecommended
// (the default) every failed check fails; under ProfileRequired a failed recommended check is
// a warning (report.Warned), reported with its reason and counted apart.
type Profile string

// The profiles.
const (
	ProfileRequired    Profile = report.ProfileRequired
	ProfileRecommended Profile = report.ProfileRecommended
)

// Profiles lists the profiles, the closed set --profile accepts.
var Profiles = []Profile{ProfileRequired, ProfileRecommended}

// DefaultProfile judges a run when none is given: both profiles are binding.
const DefaultProfile = ProfileRecommended

// DefaultSyncTimeout bounds every wait for the synchronizer (--sync-timeout). A correct
// synchronizer that polls every 10 s needs at most one poll period plus a write; 90 s leaves
// it several periods, so the required profile's default passes it.
const DefaultSyncTimeout = 90 * time.Second

// ParseProfile validates s against the closed set ("" is DefaultProfile).
func ParseProfile(s string) (Profile, error) {
	switch Profile(s) {
	case "":
		return DefaultProfile, nil
	case ProfileRequired, ProfileRecommended:
		return Profile(s), nil
	}
	return "", fmt.Errorf("unknown profile %q (known: %s, %s)", s, ProfileRequired, ProfileRecommended)
}

// String implements flag.Value; the zero Profile prints as DefaultProfile.
func (p *Profile) String() string {
	if p == nil || *p == "" {
		return string(DefaultProfile)
	}
	return string(*p)
}

// Set implements flag.Value.
func (p *Profile) Set(s string) error {
	v, err := ParseProfile(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// Type implements pflag.Value.
func (p *Profile) Type() string { return "profile" }

// profileOf returns the step's profile (required when unset).
func (s Step) profileOf() Profile {
	if s.Profile == "" {
		return ProfileRequired
	}
	return s.Profile
}

// profile is the profile the run is judged by.
func (c *Context) profile() Profile {
	if c.Profile == "" {
		return DefaultProfile
	}
	return c.Profile
}
