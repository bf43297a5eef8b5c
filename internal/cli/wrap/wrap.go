// Package wrap is `keysync wrap`: wrap a PEM private key with Key Protect (real or mockkp)
// and print a ready kp-key Secret for the image key synchronizer.
package wrap

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/cli/kp"
	"github.com/keysync-dev/keysync/internal/crikeys"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/names"
)

// DefaultNamespace is the IBM Image Key Synchronizer's namespace.
const DefaultNamespace = names.Namespace

// maxKeyBytes bounds the key file: the wrap API takes at most 7168 bytes of key material
// (the decoded plaintext, here the PEM).
const maxKeyBytes = 7168

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// NewCommand builds `keysync wrap`.
func NewCommand(s *cli.Streams) *cobra.Command {
	var (
		conn       kp.Conn
		rootKeyID  string
		keyFile    string
		name       string
		namespace  string
		output     string
		noValidate bool
	)
	cmd := &cobra.Command{
		Use:   "wrap --root-key-id ID --key FILE",
		Short: "Wrap a PEM private key with Key Protect and print a kp-key Secret",
		Long: `wrap reads a PEM private key, checks that CRI-O can use it, wraps base64 of the PEM
with the root key (the kp-key convention, as "ibmcloud kp key wrap" after "base64 key.pem")
and prints a Secret of type kp-key (data rootkeyid, ciphertext) for kubectl apply.
The API key comes from ` + kp.EnvAPIKey + `, --apikey-file or --config, never from a flag value.`,
		Example: `  export ` + kp.EnvAPIKey + `=...
  keysync wrap --url http://127.0.0.1:8300 --token-url http://127.0.0.1:8300/identity/token \
    --instance-id INSTANCE --root-key-id ROOTKEY --key image-key.pem | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "yaml" && output != "json" {
				return fmt.Errorf("invalid --output %q: want yaml or json", output)
			}
			if name == "" {
				if keyFile == "-" {
					return fmt.Errorf("--name is required when the key comes from stdin")
				}
				name = strings.ToLower(strings.TrimSuffix(filepath.Base(keyFile), filepath.Ext(keyFile)))
			}
			if len(name) > 253 || !dns1123.MatchString(name) {
				return fmt.Errorf("invalid Secret name %q: must be a DNS-1123 subdomain (set --name)", name)
			}
			if !dns1123.MatchString(namespace) || len(namespace) > 63 {
				return fmt.Errorf("invalid --namespace %q", namespace)
			}
			pemData, err := readKey(s.In, keyFile)
			if err != nil {
				return err
			}
			if !noValidate {
				if _, err := crikeys.Normalize(pemData); err != nil {
					return fmt.Errorf("refusing to wrap %s, CRI-O could not use it (--no-validate wraps it anyway): %w", keyFile, err)
				}
			}
			client, cfg, err := conn.Client()
			if err != nil {
				return err
			}
			ct, err := kpkey.Wrap(cmd.Context(), client, rootKeyID, pemData)
			if err != nil {
				return err
			}
			s.Logger.Info("wrapped key", "secret", namespace+"/"+name, "root_key_id", rootKeyID,
				"instance", cfg.InstanceID, "key_bytes", len(pemData))
			out, err := render(Secret(namespace, name, rootKeyID, ct), output)
			if err != nil {
				return err
			}
			_, err = s.Out.Write(out)
			return err
		},
	}
	conn.AddFlags(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&rootKeyID, "root-key-id", "", "id (or alias) of the Key Protect root key that wraps the key")
	f.StringVar(&keyFile, "key", "", "PEM private key file to wrap (- reads stdin)")
	f.StringVar(&name, "name", "", "Secret name; default the key file's name without extension")
	f.StringVarP(&namespace, "namespace", "n", DefaultNamespace, "Secret namespace")
	f.StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	f.BoolVar(&noValidate, "no-validate", false, "wrap the file even if CRI-O could not use it as a key (negative tests)")
	_ = cmd.MarkFlagRequired("root-key-id")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func readKey(stdin io.Reader, path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("failed to open key file: %w", err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxKeyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read key file %s: %w", path, err)
	}
	if len(data) > maxKeyBytes {
		return nil, fmt.Errorf("failed to read key file %s: larger than %d bytes, which Key Protect cannot wrap", path, maxKeyBytes)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("failed to read key file %s: %w", path, crikeys.ErrEmpty)
	}
	return data, nil
}

// Secret builds the kp-key Secret.
func Secret(namespace, name, rootKeyID, ciphertext string) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Type:       corev1.SecretType(kpkey.SecretTypeKPKey),
		Data: map[string][]byte{
			kpkey.RootKeyIDKey:  []byte(rootKeyID),
			kpkey.CiphertextKey: []byte(ciphertext),
		},
	}
}

func render(sec *corev1.Secret, format string) ([]byte, error) {
	if format == "json" {
		data, err := json.MarshalIndent(sec, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("failed to encode Secret: %w", err)
		}
		return append(data, '\n'), nil
	}
	data, err := yaml.Marshal(sec)
	if err != nil {
		return nil, fmt.Errorf("failed to encode Secret: %w", err)
	}
	return data, nil
}
