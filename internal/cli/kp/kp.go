// Package kp is `keysync kp`: Key Protect chores for labs (create-root-key), and the
// connection flags that every Key Protect command of keysync shares (Conn).
package kp

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	keyprotect "github.com/IBM/keyprotect-go-client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/kpkey"
)

// Environment variables read when the matching flag is not set. The API key is only ever
// read from KEYSYNC_KP_APIKEY, --apikey-file or --config, never from a flag value (which
// would show in ps).
const (
	EnvURL        = "KEYSYNC_KP_URL"
	EnvTokenURL   = "KEYSYNC_KP_TOKEN_URL"
	EnvInstanceID = "KEYSYNC_KP_INSTANCE_ID"
	EnvAPIKey     = "KEYSYNC_KP_APIKEY"
)

var errConfigJSON = errors.New("not a valid config.json object")

// Conn holds the flags that reach Key Protect (real or mockkp).
type Conn struct {
	URL        string
	TokenURL   string
	InstanceID string
	APIKeyFile string
	ConfigFile string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
}

// AddFlags registers the connection flags.
func (c *Conn) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.URL, "url", "", "Key Protect base URL, e.g. https://us-south.kms.cloud.ibm.com or mockkp's http://127.0.0.1:8300 (env "+EnvURL+")")
	fs.StringVar(&c.TokenURL, "token-url", "", "IAM token URL; default the real IAM, for mockkp <url>/identity/token (env "+EnvTokenURL+")")
	fs.StringVar(&c.InstanceID, "instance-id", "", "Key Protect instance id (env "+EnvInstanceID+")")
	fs.StringVar(&c.APIKeyFile, "apikey-file", "", "file holding the IBM Cloud API key; default env "+EnvAPIKey)
	fs.StringVar(&c.ConfigFile, "config", "", "a keyprotect-config config.json (keyprotect-url, instance-id, apikey, token-url); flags and env override its fields")
}

// Config resolves flags, environment and --config into a validated kpkey.Config.
// Precedence: flag, then environment, then --config.
func (c *Conn) Config() (kpkey.Config, error) {
	getenv := c.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var cfg kpkey.Config
	if c.ConfigFile != "" {
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return kpkey.Config{}, fmt.Errorf("failed to read --config: %w", err)
		}
		// Fields may come from flags and env too: validate the merged result below. The
		// decode error is not wrapped, as it could quote the file (which holds the API key).
		if json.Unmarshal(data, &cfg) != nil {
			return kpkey.Config{}, fmt.Errorf("failed to parse --config %s: %w", c.ConfigFile, errConfigJSON)
		}
	}
	pick := func(dst *string, flag, env string) {
		if flag != "" {
			*dst = flag
		} else if v := getenv(env); v != "" {
			*dst = v
		}
	}
	pick(&cfg.URL, c.URL, EnvURL)
	pick(&cfg.TokenURL, c.TokenURL, EnvTokenURL)
	pick(&cfg.InstanceID, c.InstanceID, EnvInstanceID)
	switch {
	case c.APIKeyFile != "":
		data, err := os.ReadFile(c.APIKeyFile)
		if err != nil {
			return kpkey.Config{}, fmt.Errorf("failed to read --apikey-file: %w", err)
		}
		cfg.APIKey = strings.TrimSpace(string(data))
		if cfg.APIKey == "" {
			return kpkey.Config{}, fmt.Errorf("failed to read --apikey-file %s: the file is empty", c.APIKeyFile)
		}
	case getenv(EnvAPIKey) != "":
		cfg.APIKey = strings.TrimSpace(getenv(EnvAPIKey))
	}
	if err := cfg.Validate(); err != nil {
		return kpkey.Config{}, fmt.Errorf("%w (set --url, --instance-id and the API key through %s or --apikey-file, or --config)", err, EnvAPIKey)
	}
	return cfg, nil
}

// Client builds the official client from the resolved configuration.
func (c *Conn) Client() (*keyprotect.Client, kpkey.Config, error) {
	cfg, err := c.Config()
	if err != nil {
		return nil, kpkey.Config{}, err
	}
	client, err := kpkey.NewClient(cfg, nil)
	if err != nil {
		return nil, kpkey.Config{}, err
	}
	return client, cfg, nil
}

// NewCommand builds `keysync kp`.
func NewCommand(s *cli.Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kp",
		Short: "Key Protect chores for labs (real Key Protect or mockkp)",
	}
	cmd.AddCommand(newCreateRootKey(s))
	return cmd
}

func newCreateRootKey(s *cli.Streams) *cobra.Command {
	var (
		conn        Conn
		name        string
		description string
		aliases     []string
		output      string
	)
	cmd := &cobra.Command{
		Use:   "create-root-key --name NAME",
		Short: "Create a root key and print its id",
		Example: `  KEYSYNC_KP_APIKEY=... keysync kp create-root-key --name lab-root \
    --url http://127.0.0.1:8300 --token-url http://127.0.0.1:8300/identity/token --instance-id INSTANCE`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "id" && output != "json" {
				return fmt.Errorf("invalid --output %q: want id or json", output)
			}
			client, cfg, err := conn.Client()
			if err != nil {
				return err
			}
			opts := []keyprotect.CreateKeyOption{}
			if description != "" {
				opts = append(opts, keyprotect.WithDescription(description))
			}
			if len(aliases) > 0 {
				opts = append(opts, keyprotect.WithAliases(aliases))
			}
			key, err := client.CreateKeyWithOptions(cmd.Context(), name, false, opts...)
			if err != nil {
				return fmt.Errorf("failed to create root key %q in instance %s: %w", name, cfg.InstanceID, err)
			}
			s.Logger.Info("created root key", "id", key.ID, "name", key.Name, "instance", cfg.InstanceID)
			if output == "id" {
				_, err = fmt.Fprintln(s.Out, key.ID)
				return err
			}
			data, err := json.MarshalIndent(struct {
				ID         string `json:"id"`
				Name       string `json:"name"`
				InstanceID string `json:"instanceID"`
				State      int    `json:"state"`
			}{key.ID, key.Name, cfg.InstanceID, key.State}, "", "  ")
			if err != nil {
				return fmt.Errorf("failed to encode output: %w", err)
			}
			_, err = fmt.Fprintln(s.Out, string(data))
			return err
		},
	}
	conn.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&name, "name", "", "name of the root key (2 to 90 characters)")
	cmd.Flags().StringVar(&description, "description", "", "description of the root key")
	cmd.Flags().StringSliceVar(&aliases, "alias", nil, "alias of the root key (repeatable, at most 5)")
	cmd.Flags().StringVarP(&output, "output", "o", "id", "output: id (the key id) or json")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}
