package conformance

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/keysync-dev/keysync/internal/kpkey"
)

// EnvKPAPIKey holds the API key of the cluster's real Key Protect (LiveKP) when
// --kp-apikey-file is not given.
const EnvKPAPIKey = "KEYSYNC_KP_APIKEY"

// LiveKP is how the suites reach the cluster's own Key Protect: where a cluster already has
// keyprotect-config, the Key Protect features never touch it, and wrap their key with the
// operator's root key through the official client instead. Without RootKeyID, the API key,
// URL and InstanceID those features skip and say which is missing.
type LiveKP struct {
	RootKeyID  string
	URL        string
	InstanceID string
	// TokenURL is the IAM token endpoint (default kpkey.DefaultTokenURL).
	TokenURL string
	// APIKey is never logged; APIKeyFile is read by Resolve when APIKey is empty.
	APIKey     string
	APIKeyFile string
	// allowHTTP lets tests use a plain-HTTP Key Protect stand-in; the flags never set it.
	allowHTTP bool
}

// RegisterFlags adds --kp-root-key-id, --kp-url, --kp-instance-id, --kp-token-url and
// --kp-apikey-file to fs.
func (l *LiveKP) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&l.RootKeyID, "kp-root-key-id", l.RootKeyID, "root key of the cluster's own Key Protect the kp features wrap with (only where keyprotect-config exists; the Secret is never changed)")
	fs.StringVar(&l.URL, "kp-url", l.URL, "the cluster's Key Protect URL (https)")
	fs.StringVar(&l.InstanceID, "kp-instance-id", l.InstanceID, "the cluster's Key Protect instance ID")
	fs.StringVar(&l.TokenURL, "kp-token-url", l.TokenURL, "IAM token endpoint (default "+kpkey.DefaultTokenURL+")")
	fs.StringVar(&l.APIKeyFile, "kp-apikey-file", l.APIKeyFile, "file holding the Key Protect API key (default $"+EnvKPAPIKey+")")
}

// FromEnv takes the API key from $KEYSYNC_KP_APIKEY (before the flags are parsed).
func (l *LiveKP) FromEnv(getenv func(string) string) {
	if v := strings.TrimSpace(getenv(EnvKPAPIKey)); v != "" {
		l.APIKey = v
	}
}

// Resolve reads APIKeyFile (it wins over the environment). A missing or unreadable file is an
// error; the key itself is never part of one.
func (l *LiveKP) Resolve() error {
	if l.APIKeyFile == "" {
		return nil
	}
	data, err := os.ReadFile(l.APIKeyFile)
	if err != nil {
		return fmt.Errorf("failed to read --kp-apikey-file: %w", err)
	}
	l.APIKey = strings.TrimSpace(string(data))
	if l.APIKey == "" {
		return fmt.Errorf("--kp-apikey-file %s is empty", l.APIKeyFile)
	}
	return nil
}

// missing names the settings a kp feature lacks against the cluster's own Key Protect.
func (l LiveKP) missing() []string {
	var out []string
	for _, f := range []struct{ name, v string }{{"--kp-root-key-id", l.RootKeyID},
		{"the API key ($" + EnvKPAPIKey + " or --kp-apikey-file)", l.APIKey},
		{"--kp-url", l.URL}, {"--kp-instance-id", l.InstanceID}} {
		if f.v == "" {
			out = append(out, f.name)
		}
	}
	return out
}

// config is the official client's configuration; it refuses to send the API key over plain
// HTTP or to a token endpoint that is not IAM's.
func (l LiveKP) config() (kpkey.Config, error) {
	cfg := kpkey.Config{URL: l.URL, InstanceID: l.InstanceID, APIKey: l.APIKey, TokenURL: l.TokenURL}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if l.allowHTTP {
		return cfg, nil
	}
	if err := cfg.CheckEndpoints(); err != nil {
		return cfg, fmt.Errorf("the --kp-* settings: %w", err)
	}
	return cfg, nil
}
