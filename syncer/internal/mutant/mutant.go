// Package mutant switches on one deliberate defect in the reference synchronizer, for
// `make mutants` (the suites must catch each one). The defects exist only in binaries built
// with the build tag keysync_mutants: in every other build On is a constant false, the
// compiler drops the defective branches, and the program has no --mutant flag.
package mutant

// Name names one defect.
type Name string

// The defects. Each is one deviation from what the reference does; mutants.go (tagged) lists
// them with their descriptions.
const (
	Mode0644        Name = "mode-0644"         // key files are written 0644
	NoValidation    Name = "no-validation"     // key Secret entries are written without validation
	SEC1AsIs        Name = "sec1-as-is"        // valid keys are written as given, not normalised (SEC1 PEM stays)
	KeepOnDelete    Name = "keep-on-delete"    // a deleted Secret's files stay
	IgnoreKPKey     Name = "ignore-kp-key"     // kp-key Secrets are ignored
	UnwrapEverySync Name = "unwrap-every-sync" // kp-keys are unwrapped on every sync, resyncs included
	Poll60s         Name = "poll-60s"          // changes are picked up 60 s late (a poller)
	NoEvents        Name = "no-events"         // no Event is ever recorded
	IgnoreUpdates   Name = "ignore-updates"    // Secret updates are ignored (rotation never lands)
	RejectWipes     Name = "reject-wipes"      // one rejected key Secret removes every key file
	TempLeftInTree  Name = "temp-left-in-tree" // stages in the keys tree and leaves a partial temp file (a crash)
	InPlace         Name = "in-place"          // writes the final file in place, in two halves, no staging
	DropSecondKey   Name = "drop-second-key"   // only the first key of a multi-key Secret is written
	DeleteOnOutage  Name = "delete-on-outage"  // a transient unwrap failure removes the synced key
	RemoveForeign   Name = "remove-foreign"    // every write or removal deletes the files in the keys directory it did not write
	FollowSymlink   Name = "follow-symlink"    // a symlink at a key file's path is followed: the key is written to its target
)
