//go:build !keysync_mutants

package mutant

// Enabled reports whether this build can carry a defect: never in a shipped build.
const Enabled = false

// On reports whether defect n is switched on: never in a shipped build.
func On(Name) bool { return false }
