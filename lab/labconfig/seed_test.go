package labconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/mockkp"
)

func TestMockKPSeed(t *testing.T) {
	id := MockKPIdentity{InstanceID: "lab-1", APIKey: "lab-apikey", RootKeyID: "lab-root"}
	data, err := MockKPSeedJSON(id)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := mockkp.LoadSeed(path)
	if err != nil {
		t.Fatalf("mockkp refuses the seed: %v", err)
	}
	got, err := Identity(s)
	if err != nil || got != id {
		t.Fatalf("Identity = %+v, %v; want %+v", got, err, id)
	}
	if n := s.Instances[0].RootKeys[0].Name; n != MockKPRootKeyName {
		t.Errorf("root key name %q, want %q", n, MockKPRootKeyName)
	}

	t.Run("with the KMS plug-in's root key", func(t *testing.T) {
		withKMS := id
		withKMS.KMSRootKeyID = "lab-kms-root"
		s, err := MockKPSeed(withKMS)
		if err != nil {
			t.Fatal(err)
		}
		if keys := s.Instances[0].RootKeys; len(keys) != 2 || keys[1].Name != MockKPKMSRootKeyName {
			t.Fatalf("root keys %+v, want the lab's and the KMS plug-in's", keys)
		}
		if got, err := Identity(s); err != nil || got != withKMS {
			t.Fatalf("Identity = %+v, %v; want %+v", got, err, withKMS)
		}
		same := id
		same.KMSRootKeyID = id.RootKeyID
		if _, err := MockKPSeed(same); err == nil {
			t.Error("a seed with the KMS root key equal to the lab's root key was accepted")
		}
	})

	for _, tt := range []struct {
		name    string
		id      MockKPIdentity
		wantErr string
	}{
		{"no instance id", MockKPIdentity{APIKey: "k", RootKeyID: "r"}, "id is missing"},
		{"no API key", MockKPIdentity{InstanceID: "i", APIKey: " ", RootKeyID: "r"}, "apiKeys[0] is empty"},
		{"slash in the key id", MockKPIdentity{InstanceID: "i", APIKey: "k", RootKeyID: "a/b"}, "has a slash"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := MockKPSeed(tt.id); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Identity(&mockkp.Seed{}); err == nil {
		t.Error("Identity of an empty seed succeeded")
	}
}
