// Package kpkey holds the kp-key contract shared by the syncer and the keysync CLI: the
// keyprotect-config Secret's config.json, building the official Key Protect client from it,
// and the wrap/unwrap convention (the wrapped plaintext is base64 of the PEM).
package kpkey

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	kp "github.com/IBM/keyprotect-go-client"

	"github.com/keysync-dev/keysync/internal/names"
)

// Names fixed by the IBM Image Key Synchronizer addon.
const (
	ConfigSecretName = names.KPConfigSecret // Secret holding ConfigKey
	ConfigKey        = names.KPConfigKey
	SecretTypeKey    = names.SecretTypeKey   // Secret type whose data entries are PEM private keys
	SecretTypeKPKey  = names.SecretTypeKPKey // Secret type holding RootKeyIDKey + CiphertextKey
	RootKeyIDKey     = "rootkeyid"
	CiphertextKey    = "ciphertext"
	// DefaultTokenURL is the official client's default IAM endpoint.
	DefaultTokenURL = "https://iam.cloud.ibm.com/oidc/token"
)

// Config is keyprotect-config's config.json. TokenURL is keysync's optional addition so that a
// mock IAM (mockkp) can be used; when empty the client's default IAM endpoint is used.
type Config struct {
	URL        string `json:"keyprotect-url"`
	InstanceID string `json:"instance-id"`
	APIKey     string `json:"apikey"`
	TokenURL   string `json:"token-url,omitempty"`
}

// ErrInvalidConfig is wrapped by every config validation error.
var ErrInvalidConfig = errors.New("invalid keyprotect-config")

// ErrInsecureConfig is wrapped by CheckEndpoints' errors.
var ErrInsecureConfig = errors.New("insecure keyprotect-config")

// ErrPlaintextNotBase64 says an unwrap succeeded but its plaintext breaks the kp-key
// convention: a definite answer about the wrapped key itself.
var ErrPlaintextNotBase64 = errors.New("unwrapped plaintext is not base64 (kp-key convention: wrap base64 of the PEM)")

// ParseConfig decodes and validates config.json. Errors never contain the API key.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%w: config.json is not valid JSON: %v", ErrInvalidConfig, jsonErrorWithoutInput(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("%w: config.json has data after its JSON object", ErrInvalidConfig)
	}
	return c, c.Validate()
}

// Validate reports the first missing or malformed field.
func (c Config) Validate() error {
	for _, f := range []struct{ name, val string }{
		{"keyprotect-url", c.URL}, {"instance-id", c.InstanceID}, {"apikey", c.APIKey},
	} {
		if strings.TrimSpace(f.val) == "" {
			return fmt.Errorf("%w: %s is missing", ErrInvalidConfig, f.name)
		}
	}
	for _, f := range []struct{ name, val string }{{"keyprotect-url", c.URL}, {"token-url", c.TokenURL}} {
		if f.val == "" {
			continue
		}
		u, err := url.Parse(f.val)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: %s must be an http(s) URL", ErrInvalidConfig, f.name)
		}
	}
	return nil
}

// CheckEndpoints enforces where the API key may go: keyprotect-url must be https, and so must
// the token URL (token-url, default IAM's public endpoint), whose host must be IAM's public
// (iam.cloud.ibm.com) or private (private.iam.cloud.ibm.com, private.<region>.iam.cloud.ibm.com)
// endpoint or the Key Protect host itself. Whoever can write keyprotect-config could otherwise
// send the API key to any host. c must be valid (Validate).
func (c Config) CheckEndpoints() error {
	kpURL, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("%w: keyprotect-url is not a URL", ErrInsecureConfig)
	}
	if kpURL.Scheme != "https" {
		return fmt.Errorf("%w: keyprotect-url must use https, not %s", ErrInsecureConfig, kpURL.Scheme)
	}
	tokenURL := c.TokenURL
	if tokenURL == "" {
		tokenURL = DefaultTokenURL
	}
	tu, err := url.Parse(tokenURL)
	if err != nil {
		return fmt.Errorf("%w: token-url is not a URL", ErrInsecureConfig)
	}
	if tu.Scheme != "https" {
		return fmt.Errorf("%w: token-url must use https, not %s", ErrInsecureConfig, tu.Scheme)
	}
	host := strings.ToLower(tu.Hostname())
	if !IsIAMHost(host) && host != strings.ToLower(kpURL.Hostname()) {
		return fmt.Errorf("%w: token-url host %q is neither IAM's (iam.cloud.ibm.com, private[.<region>].iam.cloud.ibm.com) nor the Key Protect host: the API key would go there", ErrInsecureConfig, host)
	}
	return nil
}

// IsIAMHost reports whether host is one of IAM's token endpoints: public iam.cloud.ibm.com,
// private private.iam.cloud.ibm.com or private.<region>.iam.cloud.ibm.com.
func IsIAMHost(host string) bool {
	const suffix = ".iam.cloud.ibm.com"
	switch {
	case host == "iam.cloud.ibm.com", host == "private.iam.cloud.ibm.com":
		return true
	case strings.HasPrefix(host, "private.") && strings.HasSuffix(host, suffix):
		region := strings.TrimSuffix(strings.TrimPrefix(host, "private."), suffix)
		if region == "" || len(region) > 63 {
			return false
		}
		for _, r := range region {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return false
			}
		}
		return true
	}
	return false
}

// TokenEndpoint is the token endpoint c uses: token-url, or IAM's public endpoint.
func (c Config) TokenEndpoint() string {
	if c.TokenURL != "" {
		return c.TokenURL
	}
	return DefaultTokenURL
}

// NewClient builds the official Key Protect client for c. transport may be nil
// (kp.DefaultTransport). The trailing slash of the URL is trimmed: the client would otherwise
// request "//api/v2/...".
func NewClient(c Config, transport http.RoundTripper) (*kp.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if transport == nil {
		transport = kp.DefaultTransport()
	}
	tokenURL := c.TokenURL
	if tokenURL == "" {
		tokenURL = DefaultTokenURL
	}
	client, err := kp.New(kp.ClientConfig{
		BaseURL:    strings.TrimRight(c.URL, "/"),
		APIKey:     c.APIKey,
		TokenURL:   tokenURL,
		InstanceID: c.InstanceID,
	}, transport)
	if err != nil {
		return nil, fmt.Errorf("failed to create Key Protect client: %w", err)
	}
	return client, nil
}

// Wrap wraps a PEM private key under rootKeyID following the kp-key convention (the
// plaintext sent is base64 of the PEM) and returns the ciphertext for the Secret.
func Wrap(ctx context.Context, c *kp.Client, rootKeyID string, pemData []byte) (string, error) {
	plain := []byte(base64.StdEncoding.EncodeToString(pemData))
	ct, err := c.Wrap(ctx, rootKeyID, plain, nil)
	if err != nil {
		return "", fmt.Errorf("failed to wrap key with root key %s: %w", rootKeyID, err)
	}
	return string(ct), nil
}

// Unwrap unwraps a kp-key ciphertext and returns the PEM (it decodes the base64 plaintext once).
func Unwrap(ctx context.Context, c *kp.Client, rootKeyID, ciphertext string) ([]byte, error) {
	plain, err := c.Unwrap(ctx, rootKeyID, []byte(ciphertext), nil)
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap with root key %s: %w", rootKeyID, err)
	}
	pemData, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(plain)))
	if err != nil {
		return nil, ErrPlaintextNotBase64
	}
	return pemData, nil
}

// jsonErrorWithoutInput keeps JSON errors from quoting the document (which holds the API key).
func jsonErrorWithoutInput(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	return "cannot decode"
}
