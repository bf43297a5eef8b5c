// Package names holds the names every part of keysync shares: the runbook's object names, the
// keys tree's layout on a node, the labels a run puts on what it creates, and file names that
// more than one package reads or writes. A literal of any of these elsewhere is a bug waiting
// to drift; use the constant.
package names

const (
	// Namespace is the runbook's namespace for the synchronizer and its Secrets.
	Namespace = "image-key-synchronizer"
	// Addon is the runbook's name of the synchronizer's DaemonSet, ServiceAccount, Role and
	// RoleBinding.
	Addon = "addon-image-key-synchronizer"
	// KPConfigSecret is the Secret in Namespace whose ConfigKey holds the Key Protect settings.
	KPConfigSecret = "keyprotect-config"
	// KPConfigKey is the data key of KPConfigSecret ("config.json").
	KPConfigKey = "config.json"

	// SecretTypeKey and SecretTypeKPKey are the runbook's Secret types: a PEM key, and a key
	// wrapped by Key Protect (rootkeyid + ciphertext).
	SecretTypeKey   = "key"
	SecretTypeKPKey = "kp-key"

	// KeysRoot is CRI-O's default decryption_keys_path on a node.
	KeysRoot = "/etc/crio/keys"
	// SyncSubdir is the synchronizer's directory under KeysRoot.
	SyncSubdir = "synced"
	// KeysDir is KeysRoot/SyncSubdir, where the synchronizer writes.
	KeysDir = KeysRoot + "/" + SyncSubdir
	// CRISocket is CRI-O's socket on a node.
	CRISocket = "/var/run/crio/crio.sock"

	// FixturesManifest is the file name of the fixtures' manifest (read only through
	// package fixtures/manifest).
	FixturesManifest = "manifest.json"
	// FixtureMarkerProgram is the marker program in every fixture image (its entrypoint),
	// FixtureMarkerData the data layer's file holding the marker line, and
	// FixtureMarkerPrefix starts every marker line (fixtures/cmd/marker).
	FixtureMarkerProgram = "/keysync-fixture-marker"
	FixtureMarkerData    = "/etc/keysync-fixture/marker"
	FixtureMarkerPrefix  = "keysync-fixture variant="

	// LabEnvFile is where a lab writes its description, relative to the checkout.
	LabEnvFile = "_out/lab.env"

	// LabelManagedBy is set to ManagedBy on every object a keysync run creates, so that
	// `keysync conformance cleanup` can find what a killed run left.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "keysync-suites"
	// LabelRunID carries the run ID of the run that created the object.
	LabelRunID = "keysync.dev/run-id"
)
