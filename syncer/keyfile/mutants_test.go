//go:build keysync_mutants

package keyfile_test

import (
	"testing"

	"github.com/keysync-dev/keysync/syncer/internal/mutant"
)

// TestMutantsBreakPlantCases: each planting mutant breaks exactly the promises it is meant to
// (and the suite's foreign area must catch it). Not parallel: the mutant is process-wide.
func TestMutantsBreakPlantCases(t *testing.T) {
	for _, tc := range []struct {
		mutant mutant.Name
		breaks map[string]bool
	}{
		{mutant: mutant.FollowSymlink, breaks: map[string]bool{plantCases[0].name: true}},
		{mutant: mutant.RemoveForeign, breaks: map[string]bool{plantCases[1].name: true, plantCases[2].name: true}},
	} {
		t.Run(string(tc.mutant), func(t *testing.T) {
			if err := mutant.Set(string(tc.mutant)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(mutant.Reset)
			for _, pc := range plantCases {
				err := runPlantCase(t, pc)
				if tc.breaks[pc.name] && err == nil {
					t.Errorf("%s: the promise held, want %s to break it", pc.name, tc.mutant)
				}
				if !tc.breaks[pc.name] && err != nil {
					t.Errorf("%s: %v; %s should not break it", pc.name, err, tc.mutant)
				}
			}
		})
	}
}
