// Package secretkeys turns a Secret's data into the key files a synchronizer may write: pure
// functions, no I/O, so that the rules can be tested and fuzzed in isolation. Validation is
// internal/crikeys (ocicrypt, exactly as CRI-O parses), never a parser of its own.
package secretkeys

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/syncer/keyfile"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keysync-dev/keysync/syncer/internal/mutant"
)

// MaxKeySize bounds one key's bytes (a 16384-bit RSA PKCS#8 PEM is ~12 KiB).
const MaxKeySize = 64 << 10

// KPKeyDataKey is the data-key part of the file name of a kp-key Secret's single file.
const KPKeyDataKey = "kp-key"

// Reasons, used as the metrics label and in Event messages.
const (
	ReasonEmpty          = "empty"
	ReasonTooLarge       = "too-large"
	ReasonInvalidName    = "invalid-data-key"
	ReasonPasswordNeeded = "password-protected"
	ReasonNotPrivateKey  = "not-private-key"
	ReasonUnknownType    = "unknown-key-type"
	ReasonMissingField   = "missing-field"
	ReasonBadCiphertext  = "bad-ciphertext"
	ReasonNoData         = "no-data"
)

// File is one key file to write.
type File struct {
	Name    string // from keyfile.Name
	DataKey string
	Data    []byte // normalised PEM, what CRI-O will read
}

// Rejection says why one data entry produces no file. Err never holds key material.
type Rejection struct {
	DataKey string
	Reason  string
	Err     error
}

func (r Rejection) String() string {
	return fmt.Sprintf("data[%q]: %s: %v", r.DataKey, r.Reason, r.Err)
}

// KeyFiles returns the files of a Secret of type key (one per data entry that is a private
// key CRI-O can use) and the reasons for every other entry, both sorted by data key.
func KeyFiles(namespace, secret string, data map[string][]byte) ([]File, []Rejection) {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var files []File
	var rejected []Rejection
	if len(keys) == 0 {
		rejected = append(rejected, Rejection{Reason: ReasonNoData, Err: errors.New("the Secret has no data")})
	}
	for _, k := range keys {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			rejected = append(rejected, Rejection{DataKey: k, Reason: ReasonInvalidName,
				Err: fmt.Errorf("invalid data key: %s", strings.Join(errs, "; "))})
			continue
		}
		out, reason, err := Normalize(data[k])
		switch {
		case mutant.On(mutant.NoValidation):
			out, err = data[k], nil
		case mutant.On(mutant.SEC1AsIs) && err == nil:
			out = data[k]
		}
		if err != nil {
			rejected = append(rejected, Rejection{DataKey: k, Reason: reason, Err: err})
			continue
		}
		files = append(files, File{Name: keyfile.Name(namespace, secret, k), DataKey: k, Data: out})
	}
	if mutant.On(mutant.DropSecondKey) && len(files) > 1 {
		files = files[:1]
	}
	return files, rejected
}

// Normalize validates one key's bytes with crikeys.Normalize (after a size check) and returns
// the bytes to write, or a reason and an error.
func Normalize(data []byte) ([]byte, string, error) {
	if len(data) > MaxKeySize {
		return nil, ReasonTooLarge, fmt.Errorf("key is %d bytes, larger than %d", len(data), MaxKeySize)
	}
	out, err := crikeys.Normalize(data)
	switch {
	case err == nil:
		return out, "", nil
	case errors.Is(err, crikeys.ErrEmpty):
		return nil, ReasonEmpty, err
	case errors.Is(err, crikeys.ErrPasswordRequired):
		return nil, ReasonPasswordNeeded, err
	case errors.Is(err, crikeys.ErrNotPrivateKey):
		return nil, ReasonNotPrivateKey, err
	default:
		return nil, ReasonUnknownType, err
	}
}

// KPRef is a kp-key Secret's reference to a wrapped key.
type KPRef struct {
	RootKeyID  string
	Ciphertext string
	// Version identifies this wrapped key for this Secret: the Secret's UID and a hash of
	// rootkeyid and ciphertext. The synchronizer unwraps once per Version.
	Version string
}

// ParseKPRef reads rootkeyid and ciphertext from a kp-key Secret's data. The ciphertext must
// be base64 (the Key Protect API's format); nothing is sent anywhere.
func ParseKPRef(uid string, data map[string][]byte) (KPRef, Rejection, bool) {
	rk := strings.TrimSpace(string(data[kpkey.RootKeyIDKey]))
	ct := strings.TrimSpace(string(data[kpkey.CiphertextKey]))
	for _, f := range []struct{ name, val string }{{kpkey.RootKeyIDKey, rk}, {kpkey.CiphertextKey, ct}} {
		if f.val == "" {
			return KPRef{}, Rejection{DataKey: f.name, Reason: ReasonMissingField,
				Err: fmt.Errorf("kp-key Secret has no %s", f.name)}, false
		}
	}
	if len(ct) > 4*MaxKeySize {
		return KPRef{}, Rejection{DataKey: kpkey.CiphertextKey, Reason: ReasonTooLarge,
			Err: fmt.Errorf("ciphertext is %d bytes, larger than %d", len(ct), 4*MaxKeySize)}, false
	}
	if len(rk) > 256 || strings.ContainsAny(rk, "/?#%\\ \t\r\n") {
		return KPRef{}, Rejection{DataKey: kpkey.RootKeyIDKey, Reason: ReasonMissingField,
			Err: errors.New("rootkeyid is not a key id or alias")}, false
	}
	if _, err := base64.StdEncoding.DecodeString(ct); err != nil {
		return KPRef{}, Rejection{DataKey: kpkey.CiphertextKey, Reason: ReasonBadCiphertext,
			Err: errors.New("ciphertext is not base64")}, false
	}
	h := sha256.Sum256([]byte(uid + "\x00" + rk + "\x00" + ct))
	return KPRef{RootKeyID: rk, Ciphertext: ct, Version: hex.EncodeToString(h[:16])}, Rejection{}, true
}
