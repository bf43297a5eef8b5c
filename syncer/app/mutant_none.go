//go:build !keysync_mutants

package app

import "flag"

// addMutantFlag adds nothing: shipped builds have no --mutant flag.
func addMutantFlag(*flag.FlagSet) {}
