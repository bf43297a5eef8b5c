//go:build !keysync_mutants

package keyfile

// Shipped builds: mutant.On is constantly false, so these are never called.

func writeInPlace(string, []byte) error { panic("keyfile: mutant code in a shipped build") }

func leaveCrashedTemp(string, []byte) { panic("keyfile: mutant code in a shipped build") }

func writeThroughSymlink(string, []byte) error { panic("keyfile: mutant code in a shipped build") }

func (s *Store) removeForeign() { panic("keyfile: mutant code in a shipped build") }
