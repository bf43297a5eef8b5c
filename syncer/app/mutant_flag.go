//go:build keysync_mutants

package app

import (
	"flag"

	"github.com/keysync-dev/keysync/syncer/internal/mutant"
)

// addMutantFlag adds --mutant (builds with the keysync_mutants tag only).
func addMutantFlag(fs *flag.FlagSet) {
	fs.Func("mutant", "switch on one deliberate defect (make mutants)", mutant.Set)
}
