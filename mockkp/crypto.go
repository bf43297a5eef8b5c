package mockkp

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ciphertextFormatVersion is the "version" field of the service's ciphertext.
const ciphertextFormatVersion = "4.0.0"

// envelope is the decoded ciphertext: base64 of this JSON is what wrap returns.
type envelope struct {
	Ciphertext string `json:"ciphertext"`
	IV         string `json:"iv"`
	Version    string `json:"version"`
	Handle     string `json:"handle"` // key version id
}

var errBadCiphertext = errors.New("the ciphertext is invalid or corrupted")

// additionalData binds a ciphertext to its key, version and the caller's AAD (length-prefixed,
// so that ["ab"] and ["a","b"] differ).
func additionalData(keyID, versionID string, aad []string) []byte {
	var b []byte
	for _, s := range append([]string{keyID, versionID}, aad...) {
		b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func seal(keyID string, v *version, plaintext []byte, aad []string) (string, error) {
	block, err := aes.NewCipher(v.Material)
	if err != nil {
		return "", fmt.Errorf("failed to create cipher: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", fmt.Errorf("failed to create GCM: %w", err)
	}
	iv, err := randomBytes(gcm.NonceSize())
	if err != nil {
		return "", err
	}
	ct := gcm.Seal(nil, iv, plaintext, additionalData(keyID, v.ID, aad))
	env, err := json.Marshal(envelope{
		Ciphertext: base64.StdEncoding.EncodeToString(ct),
		IV:         base64.StdEncoding.EncodeToString(iv),
		Version:    ciphertextFormatVersion,
		Handle:     v.ID,
	})
	if err != nil {
		return "", fmt.Errorf("failed to encode ciphertext: %w", err)
	}
	return base64.StdEncoding.EncodeToString(env), nil
}

// parseCiphertext decodes the outer base64 + JSON; it does not authenticate.
func parseCiphertext(s string) (envelope, []byte, []byte, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return envelope{}, nil, nil, errBadCiphertext
	}
	env, ok := parseOwnEnvelope(raw)
	if !ok {
		if err := json.Unmarshal(raw, &env); err != nil {
			return envelope{}, nil, nil, errBadCiphertext
		}
	}
	if env.Handle == "" {
		return envelope{}, nil, nil, errBadCiphertext
	}
	ct, err1 := base64.StdEncoding.DecodeString(env.Ciphertext)
	iv, err2 := base64.StdEncoding.DecodeString(env.IV)
	if err1 != nil || err2 != nil || len(iv) != 12 || env.Version != ciphertextFormatVersion {
		return envelope{}, nil, nil, errBadCiphertext
	}
	return env, ct, iv, nil
}

func open(keyID string, v *version, ct, iv []byte, aad []string) ([]byte, error) {
	block, err := aes.NewCipher(v.Material)
	if err != nil {
		return nil, fmt.Errorf("failed to create cipher: %w", err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("failed to create GCM: %w", err)
	}
	pt, err := gcm.Open(nil, iv, ct, additionalData(keyID, v.ID, aad))
	if err != nil {
		return nil, errBadCiphertext
	}
	return pt, nil
}

// parseOwnEnvelope is the fast path for the exact layout seal writes
// ({"ciphertext":"…","iv":"…","version":"…","handle":"…"} with values that need no JSON
// escapes); anything else goes through encoding/json. Unwrap is the hot path of mockkp and
// this halves its JSON work.
func parseOwnEnvelope(raw []byte) (envelope, bool) {
	var env envelope
	rest := string(raw)
	for _, f := range []struct {
		prefix string
		dst    *string
	}{
		{`{"ciphertext":"`, &env.Ciphertext}, {`","iv":"`, &env.IV},
		{`","version":"`, &env.Version}, {`","handle":"`, &env.Handle},
	} {
		var ok bool
		if rest, ok = strings.CutPrefix(rest, f.prefix); !ok {
			return envelope{}, false
		}
		end := strings.IndexByte(rest, '"')
		if end < 0 || strings.IndexByte(rest[:end], '\\') >= 0 {
			return envelope{}, false
		}
		*f.dst, rest = rest[:end], rest[end:]
	}
	return env, rest == `"}`
}
