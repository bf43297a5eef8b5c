package labconfig

import (
	"encoding/json"
	"fmt"

	"github.com/keysync-dev/keysync/mockkp"
)

// MockKPRootKeyName is the name of the root key every lab seeds mockkp with.
const MockKPRootKeyName = "keysync-lab-root"

// MockKPKMSRootKeyName is the name of the root key (CRK) a lab's KMS plug-in wraps
// kube-apiserver's DEKs with: its own, so that rotating it leaves the kp-key Secrets' key alone.
const MockKPKMSRootKeyName = "keysync-lab-kms-root"

// MockKPIdentity is the one instance, API key and root key a lab seeds mockkp with; the lab
// chooses the ids (fixed in the node lab, random per cluster in the kind lab). KMSRootKeyID,
// when set, adds the KMS plug-in's root key.
type MockKPIdentity struct {
	InstanceID, APIKey, RootKeyID string
	KMSRootKeyID                  string
}

// MockKPSeed returns the lab's mockkp seed, validated as mockkp validates its --seed file.
func MockKPSeed(id MockKPIdentity) (*mockkp.Seed, error) {
	s := &mockkp.Seed{Instances: []mockkp.SeedInstance{{
		ID:       id.InstanceID,
		APIKeys:  []string{id.APIKey},
		RootKeys: []mockkp.SeedKey{{ID: id.RootKeyID, Name: MockKPRootKeyName}},
	}}}
	if id.KMSRootKeyID != "" {
		s.Instances[0].RootKeys = append(s.Instances[0].RootKeys, mockkp.SeedKey{ID: id.KMSRootKeyID, Name: MockKPKMSRootKeyName})
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("invalid mockkp seed: %w", err)
	}
	return s, nil
}

// MockKPSeedJSON returns the lab's mockkp seed as the --seed file's JSON.
func MockKPSeedJSON(id MockKPIdentity) ([]byte, error) {
	s, err := MockKPSeed(id)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("failed to encode mockkp seed: %w", err)
	}
	return append(data, '\n'), nil
}

// Identity returns the seed's first instance, API key and root key, and the root key named
// MockKPKMSRootKeyName when there is one: what a lab's env file names.
func Identity(s *mockkp.Seed) (MockKPIdentity, error) {
	if s == nil || len(s.Instances) == 0 || len(s.Instances[0].APIKeys) == 0 || len(s.Instances[0].RootKeys) == 0 {
		return MockKPIdentity{}, fmt.Errorf("mockkp seed has no instance with an API key and a root key")
	}
	in := s.Instances[0]
	id := MockKPIdentity{InstanceID: in.ID, APIKey: in.APIKeys[0], RootKeyID: in.RootKeys[0].ID}
	for _, k := range in.RootKeys[1:] {
		if k.Name == MockKPKMSRootKeyName {
			id.KMSRootKeyID = k.ID
		}
	}
	return id, nil
}
