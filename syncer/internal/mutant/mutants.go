//go:build keysync_mutants

package mutant

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
)

// Enabled reports whether this build can carry a defect.
const Enabled = true

// All lists every defect.
var All = []Name{Mode0644, NoValidation, SEC1AsIs, KeepOnDelete, IgnoreKPKey, UnwrapEverySync, Poll60s,
	NoEvents, IgnoreUpdates, RejectWipes, TempLeftInTree, InPlace, DropSecondKey, DeleteOnOutage, RemoveForeign, FollowSymlink}

// active is the one defect of this process, set once by the --mutant flag before anything runs.
var active atomic.Value

// Set switches defect s on (the --mutant flag).
func Set(s string) error {
	if !slices.Contains(All, Name(s)) {
		names := make([]string, len(All))
		for i, n := range All {
			names[i] = string(n)
		}
		sort.Strings(names)
		return fmt.Errorf("unknown mutant %q (known: %s)", s, strings.Join(names, ", "))
	}
	active.Store(Name(s))
	return nil
}

// On reports whether defect n is switched on.
func On(n Name) bool {
	v, _ := active.Load().(Name)
	return v == n
}

// Reset switches every defect off again (tests that set one).
func Reset() { active.Store(Name("")) }
