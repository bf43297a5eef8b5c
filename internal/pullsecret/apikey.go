package pullsecret

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// EnvAPIKey names the environment variable that holds the registry API key when no
// --apikey-file is given. There is no flag for the key's value: it would show in ps and shell
// history.
const EnvAPIKey = "KEYSYNC_REGISTRY_APIKEY"

// maxAPIKeyBytes bounds an API key file (IBM Cloud API keys are 44 characters).
const maxAPIKeyBytes = 4096

// ErrEmptyAPIKey is returned for an empty API key (an empty file, a file holding only a
// newline, or an empty environment variable).
var ErrEmptyAPIKey = errors.New("empty API key")

// APIKey is a key read by ReadAPIKey.
type APIKey struct {
	// Value is the key; never log or print it.
	Value string
	// Source says where it came from ("file F" or "$KEYSYNC_REGISTRY_APIKEY"), for messages.
	Source string
	// StrippedNewline is true when one trailing newline was removed from the file's content.
	StrippedNewline bool
}

// ReadAPIKey reads the API key from file when it is set, else from $KEYSYNC_REGISTRY_APIKEY
// (through getenv). Exactly one trailing "\n" is stripped from a file (as `echo KEY > F`
// writes it); a key that is then empty, or that still holds white space or control characters
// (a second newline, "\r", a space), is an error. Errors never contain the key.
func ReadAPIKey(file string, getenv func(string) string) (APIKey, error) {
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return APIKey{}, fmt.Errorf("failed to read API key file: %w", err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxAPIKeyBytes+1))
		if err != nil {
			return APIKey{}, fmt.Errorf("failed to read API key file %s: %w", file, err)
		}
		if len(data) > maxAPIKeyBytes {
			return APIKey{}, fmt.Errorf("failed to read API key file %s: larger than %d bytes, not an API key", file, maxAPIKeyBytes)
		}
		k := APIKey{Value: string(data), Source: "file " + file}
		if v, ok := strings.CutSuffix(k.Value, "\n"); ok {
			k.Value, k.StrippedNewline = v, true
		}
		if err := checkKey(k); err != nil {
			return APIKey{}, err
		}
		return k, nil
	}
	k := APIKey{Value: getenv(EnvAPIKey), Source: "$" + EnvAPIKey}
	if k.Value == "" {
		return APIKey{}, fmt.Errorf("%w: set --apikey-file or %s", ErrEmptyAPIKey, EnvAPIKey)
	}
	if err := checkKey(k); err != nil {
		return APIKey{}, err
	}
	return k, nil
}

func checkKey(k APIKey) error {
	if k.Value == "" {
		if k.StrippedNewline {
			return fmt.Errorf("%w in %s: it holds only a newline", ErrEmptyAPIKey, k.Source)
		}
		return fmt.Errorf("%w in %s", ErrEmptyAPIKey, k.Source)
	}
	if strings.ContainsFunc(k.Value, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("invalid API key in %s: it contains white space or a control character (only one trailing newline is stripped)", k.Source)
	}
	return nil
}
