package mockkp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Key states as the service numbers them.
const (
	StatePreActive   = 0
	StateActive      = 1
	StateSuspended   = 2
	StateDeactivated = 3
	StateDestroyed   = 5
)

// Seed pre-creates instances, API keys and root keys with fixed ids (the --seed file).
//
//	{"instances": [{"id": "…", "apiKeys": ["…"],
//	  "rootKeys": [{"id": "…", "name": "…", "material": "<base64 of 32 bytes, optional>"}]}]}
type Seed struct {
	Instances []SeedInstance `json:"instances"`
}

// SeedInstance is one Key Protect instance of a Seed.
type SeedInstance struct {
	ID string `json:"id"`
	// APIKeys may obtain tokens valid for this instance. One API key may be listed in several
	// instances.
	APIKeys  []string  `json:"apiKeys"`
	RootKeys []SeedKey `json:"rootKeys,omitempty"`
}

// SeedKey is a root key of a SeedInstance. Its first version has the key's id. Material is
// base64 of 32 bytes; when empty, random bytes are used (persist them with a state file).
type SeedKey struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Aliases  []string `json:"aliases,omitempty"`
	Material string   `json:"material,omitempty"`
}

// LoadSeed reads and validates a seed file.
func LoadSeed(path string) (*Seed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read seed file: %w", err)
	}
	var s Seed
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("failed to decode seed file %s: %w", path, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("invalid seed file %s: %w", path, err)
	}
	return &s, nil
}

// Validate checks ids, names and materials.
func (s *Seed) Validate() error {
	seen := map[string]bool{}
	for i, in := range s.Instances {
		if strings.TrimSpace(in.ID) == "" {
			return fmt.Errorf("instances[%d]: id is missing", i)
		}
		if seen["i/"+in.ID] {
			return fmt.Errorf("instances[%d]: duplicate instance id %q", i, in.ID)
		}
		seen["i/"+in.ID] = true
		if len(in.APIKeys) == 0 {
			return fmt.Errorf("instance %q: at least one API key is needed", in.ID)
		}
		for j, k := range in.APIKeys {
			if strings.TrimSpace(k) == "" {
				return fmt.Errorf("instance %q: apiKeys[%d] is empty", in.ID, j)
			}
		}
		for j, k := range in.RootKeys {
			if strings.TrimSpace(k.ID) == "" || strings.Contains(k.ID, "/") {
				return fmt.Errorf("instance %q: rootKeys[%d]: id is missing or has a slash", in.ID, j)
			}
			if seen["k/"+k.ID] {
				return fmt.Errorf("instance %q: rootKeys[%d]: duplicate key id %q", in.ID, j, k.ID)
			}
			seen["k/"+k.ID] = true
			if strings.TrimSpace(k.Name) == "" {
				return fmt.Errorf("instance %q: root key %q: name is missing", in.ID, k.ID)
			}
			if k.Material != "" {
				m, err := base64.StdEncoding.DecodeString(k.Material)
				if err != nil || len(m) != 32 {
					return fmt.Errorf("instance %q: root key %q: material must be base64 of 32 bytes", in.ID, k.ID)
				}
			}
		}
	}
	return nil
}

// state is everything the server persists. Guarded by Server.mu.
type state struct {
	// TokenSecret signs access tokens, so that tokens survive a restart with a state file.
	TokenSecret []byte               `json:"tokenSecret"`
	Instances   map[string]*instance `json:"instances"`
}

type instance struct {
	ID string `json:"id"`
	// APIKeys holds subjects (see subjectOf), never the API keys themselves.
	Subjects []string        `json:"subjects"`
	Keys     map[string]*key `json:"keys"`
	// Order lists key ids in creation order (for list).
	Order []string `json:"order"`
}

type key struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	Description    string     `json:"description,omitempty"`
	Aliases        []string   `json:"aliases,omitempty"`
	Tags           []string   `json:"tags,omitempty"`
	Extractable    bool       `json:"extractable"`
	Imported       bool       `json:"imported,omitempty"`
	Suspended      bool       `json:"suspended,omitempty"`
	Deleted        bool       `json:"deleted,omitempty"`
	Created        time.Time  `json:"created"`
	Updated        time.Time  `json:"updated"`
	LastRotated    *time.Time `json:"lastRotated,omitempty"`
	DeletionDate   *time.Time `json:"deletionDate,omitempty"`
	ExpirationDate *time.Time `json:"expirationDate,omitempty"`
	// Versions oldest first; the last one wraps.
	Versions []*version `json:"versions"`
}

type version struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Material []byte    `json:"material"`
}

func (k *key) latest() *version { return k.Versions[len(k.Versions)-1] }

func (k *key) version(id string) *version {
	for _, v := range k.Versions {
		if v.ID == id {
			return v
		}
	}
	return nil
}

// stateAt reports the key state at now.
func (k *key) stateAt(now time.Time) int {
	switch {
	case k.Deleted:
		return StateDestroyed
	case k.ExpirationDate != nil && !now.Before(*k.ExpirationDate):
		return StateDeactivated
	case k.Suspended:
		return StateSuspended
	}
	return StateActive
}

// subjectOf is the IAM subject (service id) of an API key: a hash, so neither the state file
// nor tokens hold the API key.
func subjectOf(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return "ServiceId-" + hex.EncodeToString(sum[:16])
}

func newState() (*state, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("failed to generate token secret: %w", err)
	}
	return &state{TokenSecret: secret, Instances: map[string]*instance{}}, nil
}

// loadState reads path; a missing file yields a new state.
func loadState(path string) (*state, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newState()
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read state file: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("failed to decode state file %s: %w", path, errors.New("invalid JSON"))
	}
	if len(st.TokenSecret) < 16 {
		return nil, fmt.Errorf("failed to load state file %s: token secret is missing", path)
	}
	if st.Instances == nil {
		st.Instances = map[string]*instance{}
	}
	for _, in := range st.Instances {
		if in.Keys == nil {
			in.Keys = map[string]*key{}
		}
		for id, k := range in.Keys {
			if len(k.Versions) == 0 {
				return nil, fmt.Errorf("failed to load state file %s: key %s has no versions", path, id)
			}
			for _, v := range k.Versions {
				if n := len(v.Material); n == 0 || (!k.Extractable && n != 16 && n != 24 && n != 32) {
					return nil, fmt.Errorf("failed to load state file %s: key %s version %s has bad material", path, id, v.ID)
				}
			}
		}
	}
	return &st, nil
}

// save writes the state atomically: a temp file in the same directory, fsync, rename.
func (st *state) save(path string) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("failed to encode state: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to create temp state file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("failed to chmod temp state file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("failed to write temp state file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("failed to sync temp state file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("failed to close temp state file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("failed to rename state file into place: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// applySeed adds the seed's instances, subjects and keys that the state does not have yet.
func (st *state) applySeed(s *Seed, now time.Time) error {
	for _, si := range s.Instances {
		in := st.Instances[si.ID]
		if in == nil {
			in = &instance{ID: si.ID, Keys: map[string]*key{}}
			st.Instances[si.ID] = in
		}
		for _, ak := range si.APIKeys {
			sub := subjectOf(ak)
			if !contains(in.Subjects, sub) {
				in.Subjects = append(in.Subjects, sub)
			}
		}
		for _, sk := range si.RootKeys {
			if _, ok := in.Keys[sk.ID]; ok {
				continue
			}
			var material []byte
			if sk.Material != "" {
				m, err := base64.StdEncoding.DecodeString(sk.Material)
				if err != nil || len(m) != 32 {
					return fmt.Errorf("root key %s: material must be base64 of 32 bytes", sk.ID)
				}
				material = m
			} else {
				m, err := randomBytes(32)
				if err != nil {
					return err
				}
				material = m
			}
			in.Keys[sk.ID] = &key{
				ID: sk.ID, Name: sk.Name, Aliases: sk.Aliases, Imported: sk.Material != "",
				Created: now, Updated: now,
				Versions: []*version{{ID: sk.ID, Created: now, Material: material}},
			}
			in.Order = append(in.Order, sk.ID)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func randomBytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("failed to read random bytes: %w", err)
	}
	return b, nil
}

// newID returns a random UUID (version 4), the service's id format.
func newID() (string, error) {
	b, err := randomBytes(16)
	if err != nil {
		return "", err
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], nil
}
