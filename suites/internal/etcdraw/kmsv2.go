package etcdraw

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// KMSv2Prefix starts every value kube-apiserver stored through a KMS v2 provider; the
// provider's name and a colon follow, then the EncryptedObject protobuf.
const KMSv2Prefix = "k8s:enc:kms:v2:"

// Envelope is what a KMS v2 value shows without decrypting it.
type Envelope struct {
	// Provider is the EncryptionConfiguration's provider name.
	Provider string
	// KeyID is the plug-in's key_id when the DEK was wrapped (Status's key_id then).
	KeyID string
	// DataLen and DEKLen are the sizes of the encrypted data and the wrapped DEK (seed).
	DataLen, DEKLen int
}

// The EncryptedObject fields (k8s.io/apiserver kmsv2/v2/api.proto).
const (
	fieldEncryptedData      = 1
	fieldKeyID              = 2
	fieldEncryptedDEKSource = 3
)

// ParseKMSv2 checks that raw is a KMS v2 value and reads its envelope.
func ParseKMSv2(raw []byte) (Envelope, error) {
	if !bytes.HasPrefix(raw, []byte(KMSv2Prefix)) {
		return Envelope{}, fmt.Errorf("value does not start with %q but %q", KMSv2Prefix, printable(raw[:min(len(raw), len(KMSv2Prefix))]))
	}
	rest := raw[len(KMSv2Prefix):]
	i := bytes.IndexByte(rest, ':')
	if i <= 0 {
		return Envelope{}, fmt.Errorf("value has no provider name after %q", KMSv2Prefix)
	}
	env := Envelope{Provider: string(rest[:i])}
	msg := rest[i+1:]
	for len(msg) > 0 {
		tag, n := binary.Uvarint(msg)
		if n <= 0 {
			return env, errors.New("EncryptedObject: bad field tag")
		}
		msg = msg[n:]
		field, wire := tag>>3, tag&7
		switch wire {
		case 0: // varint
			_, n := binary.Uvarint(msg)
			if n <= 0 {
				return env, fmt.Errorf("EncryptedObject: bad varint in field %d", field)
			}
			msg = msg[n:]
		case 2: // length-delimited
			l, n := binary.Uvarint(msg)
			if n <= 0 || l > uint64(len(msg)-n) {
				return env, fmt.Errorf("EncryptedObject: bad length in field %d", field)
			}
			v := msg[n : n+int(l)]
			msg = msg[n+int(l):]
			switch field {
			case fieldEncryptedData:
				env.DataLen = len(v)
			case fieldKeyID:
				env.KeyID = string(v)
			case fieldEncryptedDEKSource:
				env.DEKLen = len(v)
			}
		default:
			return env, fmt.Errorf("EncryptedObject: unexpected wire type %d in field %d", wire, field)
		}
	}
	switch {
	case env.DataLen == 0:
		return env, errors.New("EncryptedObject has no encrypted data")
	case env.KeyID == "":
		return env, errors.New("EncryptedObject has no key id")
	case env.DEKLen == 0:
		return env, errors.New("EncryptedObject has no encrypted DEK")
	}
	return env, nil
}

// window is the length of the byte runs of a secret looked for in a raw value: any run of the
// secret this long (and so any longer one) found verbatim, or in base64, fails CheckEncrypted.
const window = 24

// CheckEncrypted checks that raw is a KMS v2 value (ParseKMSv2) holding none of the secrets'
// bytes: no run of window bytes of any secret, verbatim or base64-encoded, appears in it.
// Errors never quote the secret.
func CheckEncrypted(raw []byte, secrets ...[]byte) (Envelope, error) {
	env, err := ParseKMSv2(raw)
	if err != nil {
		return env, err
	}
	for i, s := range secrets {
		for _, form := range [][]byte{s, []byte(base64.StdEncoding.EncodeToString(s))} {
			if at, ok := containsRun(raw, form); ok {
				return env, fmt.Errorf("value holds %d bytes of secret #%d verbatim (from its offset %d)", window, i+1, at)
			}
		}
	}
	return env, nil
}

// containsRun reports whether hay holds any window-byte run of needle (the whole of a shorter
// needle), and the run's offset in needle.
func containsRun(hay, needle []byte) (int, bool) {
	if len(needle) <= window {
		return 0, len(needle) > 0 && bytes.Contains(hay, needle)
	}
	for off := 0; off+window <= len(needle); off++ {
		if bytes.Contains(hay, needle[off:off+window]) {
			return off, true
		}
	}
	return 0, false
}

// printable quotes b for messages, hiding non-printable bytes.
func printable(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '.'
		}
		return r
	}, string(b))
}
