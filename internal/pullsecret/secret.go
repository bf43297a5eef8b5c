package pullsecret

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const (
	// Username is the registry user name that goes with an IBM Cloud API key.
	Username = "iamapikey"
	// DefaultName is IBM Cloud's name for a cluster's registry pull Secret.
	DefaultName = "all-icr-io"
	// DefaultNamespace is where a pull Secret goes unless told otherwise.
	DefaultNamespace = "default"
)

// authEntry is one "auths" entry. Fields are declared in sorted order: encoding/json writes
// them in declaration order and map keys sorted, so the document's keys are sorted throughout.
type authEntry struct {
	Auth     string `json:"auth"`
	Password string `json:"password"`
	Username string `json:"username"`
}

type dockerConfig struct {
	Auths map[string]authEntry `json:"auths"`
}

// Auth returns the dockerconfigjson "auth" value: base64 of "user:password", with no trailing
// newline (unlike `echo user:password | base64`).
func Auth(user, password string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
}

// DockerConfigJSON returns the compact .dockerconfigjson document for servers (validated,
// sorted, deduplicated) with user Username and password apiKey.
func DockerConfigJSON(servers []string, apiKey string) ([]byte, error) {
	servers, err := Normalize(servers)
	if err != nil {
		return nil, err
	}
	if apiKey == "" {
		return nil, ErrEmptyAPIKey
	}
	cfg := dockerConfig{Auths: make(map[string]authEntry, len(servers))}
	entry := authEntry{Auth: Auth(Username, apiKey), Password: apiKey, Username: Username}
	for _, s := range servers {
		cfg.Auths[s] = entry
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("failed to encode dockerconfigjson: %w", err)
	}
	return data, nil
}

// Build returns the pull Secret namespace/name of type kubernetes.io/dockerconfigjson for
// servers and apiKey.
func Build(namespace, name string, servers []string, apiKey string) (*corev1.Secret, error) {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return nil, fmt.Errorf("invalid Secret name %q: %s", name, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Label(namespace); len(errs) > 0 {
		return nil, fmt.Errorf("invalid namespace %q: %s", namespace, strings.Join(errs, "; "))
	}
	doc, err := DockerConfigJSON(servers, apiKey)
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: doc},
	}, nil
}

// Render encodes sec as "yaml" or "json" (two-space indent), keys sorted at every level, with
// a final newline: the same Secret always gives the same bytes.
func Render(sec *corev1.Secret, format string) ([]byte, error) {
	switch format {
	case "yaml":
		data, err := yaml.Marshal(sec) // through JSON into a map: keys sorted
		if err != nil {
			return nil, fmt.Errorf("failed to encode Secret: %w", err)
		}
		return data, nil
	case "json":
		raw, err := json.Marshal(sec)
		if err != nil {
			return nil, fmt.Errorf("failed to encode Secret: %w", err)
		}
		var m map[string]any // struct order → map order: sorted keys
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("failed to encode Secret: %w", err)
		}
		data, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("failed to encode Secret: %w", err)
		}
		return append(data, '\n'), nil
	default:
		return nil, fmt.Errorf("invalid output format %q: want yaml or json", format)
	}
}
