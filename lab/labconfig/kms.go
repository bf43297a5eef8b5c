package labconfig

import "fmt"

// KMSProviderName names keysync's KMS plug-in in both labs' EncryptionConfiguration, and so in
// every encrypted value's prefix (k8s:enc:kms:v2:<name>:); it must not change once data exists.
const KMSProviderName = "keysync-kp"

// KMSPlugin is what the labs' kmsplugin-config.yaml says: the plug-in's socket and health port,
// and Key Protect (the lab's mockkp) as the plug-in reaches it.
type KMSPlugin struct {
	Socket             string
	HealthPort         int
	TokenURL, URL      string
	APIKey, InstanceID string
	RootKeyID          string
}

// KMSPluginConfig renders the KMS runbook's kmsplugin-config.yaml for the plug-in (the labs'
// mockkp serves plain HTTP: the plug-in runs with --allow-insecure-kp). It holds the API key:
// write it 0600.
func KMSPluginConfig(lab string, p KMSPlugin) string {
	return fmt.Sprintf(`# keysync %s lab: the KMS runbook's kmsplugin-config.yaml for keysync-kms-plugin.
SERVER_CONFIG:
  UNIX_SOCKET_PATH: %q
  TOKEN_URL: %q
  API_KEY: %q
  HEALTHZ_PATH: "/healthz"
  HEALTHZ_PORT: %d
  MAX_RETRIES: 2
KP_CONFIG:
  CRK_ID: %q
  URL: %q
  INSTANCE_ID: %q
LOGGER:
  LOG_LEVEL: "info"
  LOG_ALL_VALUES: false
`, lab, p.Socket, p.TokenURL, p.APIKey, p.HealthPort, p.RootKeyID, p.URL, p.InstanceID)
}

// EncryptionConfig is kube-apiserver's --encryption-provider-config: Secrets through the
// plug-in at socket (KMS v2), then identity so that Secrets written before still read.
func EncryptionConfig(socket string) string {
	return fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - kms:
          apiVersion: v2
          name: %s
          endpoint: unix://%s
          timeout: 3s
      - identity: {}
`, KMSProviderName, socket)
}
