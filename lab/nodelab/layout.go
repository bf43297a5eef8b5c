package nodelab

import "path/filepath"

// Layout names every path of a node lab under its work dir. Nothing the lab writes or mounts
// lives outside it, except the env file.
type Layout struct{ Dir string }

func (l Layout) path(p ...string) string { return filepath.Join(append([]string{l.Dir}, p...)...) }

// LogDir holds one log file per process (<name>.log) and the fixtures push's log.
func (l Layout) LogDir() string { return l.path("logs") }

// Log is a process's log file.
func (l Layout) Log(name string) string { return l.path("logs", name+".log") }

// RunDir holds pid files and sockets.
func (l Layout) RunDir() string { return l.path("run") }

// PidFile is a process's pid file.
func (l Layout) PidFile(name string) string { return l.path("run", name+".pid") }

// StateFile records the ports chosen on the first up, so later ups keep the same addresses.
func (l Layout) StateFile() string { return l.path("state.json") }

// Kubeconfig is the lab's admin kubeconfig.
func (l Layout) Kubeconfig() string { return l.path("kubeconfig") }

// RegistryDir holds the registry's config and storage.
func (l Layout) RegistryDir() string { return l.path("registry") }

// RegistryConfig is the registry's config file.
func (l Layout) RegistryConfig() string { return l.path("registry", "config.yml") }

// RegistryHtpasswd is the registry's htpasswd file (bcrypt, mode 0600).
func (l Layout) RegistryHtpasswd() string { return l.path("registry", "htpasswd") }

// RegistryAuthFile is the lab's containers-auth.json (mode 0600): the registry's credentials
// for every host name of it (REGISTRY_AUTH_FILE).
func (l Layout) RegistryAuthFile() string { return l.path("registry", "auth.json") }

// RegistryStorage is the registry's storage root.
func (l Layout) RegistryStorage() string { return l.path("registry", "storage") }

// ControlPlaneDir holds etcd's data and kube-apiserver's certificates and keys.
func (l Layout) ControlPlaneDir() string { return l.path("control-plane") }

// EtcdDataDir is etcd's data dir.
func (l Layout) EtcdDataDir() string { return l.path("control-plane", "etcd") }

// APIServerCertDir is kube-apiserver's --cert-dir (it writes its self-signed serving
// certificate there once and reuses it).
func (l Layout) APIServerCertDir() string { return l.path("control-plane", "certs") }

// TokenFile holds the lab's admin bearer token; TokenAuthFile is kube-apiserver's
// --token-auth-file naming it.
func (l Layout) TokenFile() string     { return l.path("control-plane", "admin.token") }
func (l Layout) TokenAuthFile() string { return l.path("control-plane", "tokens.csv") }

// SAKey and SAPub are the service-account signing key pair.
func (l Layout) SAKey() string { return l.path("control-plane", "sa.key") }
func (l Layout) SAPub() string { return l.path("control-plane", "sa.pub") }

// MockKPDir holds mockkp's seed and state.
func (l Layout) MockKPDir() string { return l.path("mockkp") }

// LabCADir holds the lab CA (lab/labca): ca.crt, and mockkp's certificate for IAM's and Key
// Protect's public names.
func (l Layout) LabCADir() string { return l.path("lab-ca") }

// SyncerHosts is the hosts file the synchronizer sees as /etc/hosts: the host's, with the
// public names mapped to mockkp's TLS address.
func (l Layout) SyncerHosts() string { return l.path("mockkp", "hosts") }

// SyncerResolvConf is the resolv.conf the synchronizer sees: a name server where nothing
// listens, so a name missing from its hosts file fails at once instead of being looked up.
func (l Layout) SyncerResolvConf() string { return l.path("mockkp", "resolv.conf") }

// KMSDir holds the KMS plug-in's config file (kmsplugin-config.yaml, the runbook's name).
func (l Layout) KMSDir() string { return l.path("kms") }

// KMSConfig is the KMS plug-in's config file (mode 0600: it holds mockkp's API key).
func (l Layout) KMSConfig() string { return l.path("kms", "kmsplugin-config.yaml") }

// KMSSocket is the KMS plug-in's gRPC socket, kube-apiserver's KMS endpoint.
func (l Layout) KMSSocket() string { return l.path("run", "kms.sock") }

// EncryptionConfig is kube-apiserver's --encryption-provider-config.
func (l Layout) EncryptionConfig() string { return l.path("control-plane", "encryption-config.yaml") }

// FixturesDir holds the pushed fixtures' manifest.json and keys.
func (l Layout) FixturesDir() string { return l.path("fixtures") }

// FixturesManifest is the pushed fixtures' manifest.
func (l Layout) FixturesManifest() string { return l.path("fixtures", "manifest.json") }

// KeysRoot is CRI-O's decryption_keys_path.
func (l Layout) KeysRoot() string { return l.path("keys") }

// SyncedDir is the synchronizer's directory under KeysRoot.
func (l Layout) SyncedDir() string { return l.path("keys", SyncSubdir) }

// StagingDir is the synchronizer's staging directory: outside the keys tree (CRI-O walks all
// of it), on the same filesystem (rename).
func (l Layout) StagingDir() string { return l.path("keys-staging") }

// CRIODir holds CRI-O's config, storage and state.
func (l Layout) CRIODir() string { return l.path("crio") }

// CRIOMainConf is CRI-O's (empty) main config file.
func (l Layout) CRIOMainConf() string { return l.path("crio", "crio.conf") }

// CRIOConfDir is CRI-O's drop-in directory.
func (l Layout) CRIOConfDir() string { return l.path("crio", "crio.conf.d") }

// RegistriesConf is the containers registries.conf CRI-O reads.
func (l Layout) RegistriesConf() string { return l.path("crio", "registries.conf") }

// RegistriesConfDir is the (empty) registries.conf.d.
func (l Layout) RegistriesConfDir() string { return l.path("crio", "registries.conf.d") }

// CRIOPolicy is the signature policy.
func (l Layout) CRIOPolicy() string { return l.path("crio", "policy.json") }

// CRIORoot is the containers-storage root.
func (l Layout) CRIORoot() string { return l.path("crio", "storage") }

// CRIORunRoot is the containers-storage run root.
func (l Layout) CRIORunRoot() string { return l.path("crio", "run", "storage") }

// CRIORunDir holds CRI-O's runtime state (exits, attach sockets, namespaces, runc state).
func (l Layout) CRIORunDir() string { return l.path("crio", "run") }

// CRIOLogDir is CRI-O's container log dir.
func (l Layout) CRIOLogDir() string { return l.path("crio", "pod-logs") }

// CNIConfDir is CRI-O's network_dir.
func (l Layout) CNIConfDir() string { return l.path("crio", "net.d") }

// CRISocket is CRI-O's listen socket.
func (l Layout) CRISocket() string { return l.path("run", "crio.sock") }

// CrictlConfig is a crictl config for the lab's CRI socket (crictl --config).
func (l Layout) CrictlConfig() string { return l.path("crictl.yaml") }
