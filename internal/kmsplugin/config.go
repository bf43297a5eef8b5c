package kmsplugin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/keysync-dev/keysync/internal/kpkey"
)

// EnvConfigFile names the runbook's environment variable holding the config file's path.
const EnvConfigFile = "config_file"

// EnvPrefix prefixes the environment variable of every setting: KEYSYNC_KMS_<FIELD>, e.g.
// KEYSYNC_KMS_CRK_ID, KEYSYNC_KMS_API_KEY.
const EnvPrefix = "KEYSYNC_KMS_"

// Defaults.
const (
	DefaultSocketPath       = "/var/run/kmsplugin/socket.sock"
	DefaultHealthzPath      = "/healthz"
	DefaultHealthzPort      = 8082
	DefaultMaxRetries       = 2
	DefaultKeyCheckInterval = 10 * time.Second
	// DefaultHealthzHost is where the health server listens unless --healthz-host says.
	DefaultHealthzHost = "127.0.0.1"
)

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid kms plug-in configuration")

// Config is the plug-in's configuration: the runbook's kmsplugin-config.yaml, overridden by
// environment variables and flags (flag > env > file > default).
type Config struct {
	// SERVER_CONFIG
	SocketPath  string // UNIX_SOCKET_PATH: the gRPC socket kube-apiserver dials
	TokenURL    string // TOKEN_URL: IAM's token endpoint (default IAM's public one)
	TokenCAFile string // TOKEN_URL_CA_FILE: CA bundle for TOKEN_URL (default system roots)
	APIKey      string // API_KEY (never a flag: --api-key-file)
	HealthzPath string // HEALTHZ_PATH: liveness path on HEALTHZ_PORT
	HealthzPort int    // HEALTHZ_PORT: loopback port of the health server (0: any)
	MaxRetries  int    // MAX_RETRIES: retries of one Key Protect call (attempts = 1 + MAX_RETRIES)
	// KP_CONFIG
	CRKID      string // CRK_ID: the root key wrapping the DEKs
	KPURL      string // URL: Key Protect's base URL
	KPCAFile   string // KP_CA_FILE: CA bundle for URL (default system roots)
	InstanceID string // INSTANCE_ID
	// LOGGER
	LogLevel     string // LOG_LEVEL: debug, info, warn, error
	LogAllValues bool   // LOG_ALL_VALUES: accepted, never honoured for secrets (warning)

	// Flag- and env-only settings.
	// AllowInsecureKP accepts http URLs and a token host that is neither IAM's nor Key
	// Protect's (labs with mockkp on loopback).
	AllowInsecureKP bool
	// KeyCheckInterval is how long a look at the root key (state, current version) is reused
	// by Status and readiness.
	KeyCheckInterval time.Duration
	// HealthzHost is the IP the health server binds (default 127.0.0.1; a static pod on the
	// host network that the node's kubelet probes or a lab publishes binds 0.0.0.0).
	HealthzHost string

	// ConfigFile is the file the settings were read from ("" when none).
	ConfigFile string
	// Warnings are what the plug-in logs at start: ignored fields, LOG_ALL_VALUES.
	Warnings []string
}

// field is one setting of the runbook's file with its flag and environment variable.
type field struct {
	section, key string
	// flag is the flag's name; "" when the field has no flag.
	flag, usage string
	// v1Only marks fields without meaning under KMS v2: read, ignored with a warning.
	v1Only string
	set    func(c *Config, v string) error
}

func (f field) env() string { return EnvPrefix + f.key }
func (f field) name() string {
	return f.section + "." + f.key
}

func strField(p func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = strings.TrimSpace(v); return nil }
}

// intField accepts "8081" and ":8081" (a port written as an address).
func intField(min int, p func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		if err != nil || n < min {
			return fmt.Errorf("must be a whole number of at least %d", min)
		}
		*p(c) = n
		return nil
	}
}

func boolField(p func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		b, err := strconv.ParseBool(strings.TrimSpace(v))
		if err != nil {
			return errors.New("must be true or false")
		}
		*p(c) = b
		return nil
	}
}

// fields lists the runbook's settings: the one source for the file, flags and env.
func fields() []field {
	mk := func(section, key, flag, usage string, set func(*Config, string) error) field {
		return field{section: section, key: key, flag: flag, usage: usage, set: set}
	}
	ignored := func(section, key, why string) field {
		return field{section: section, key: key, v1Only: why, set: func(*Config, string) error { return nil }}
	}
	const srv, kpc, lg = "SERVER_CONFIG", "KP_CONFIG", "LOGGER"
	return []field{
		mk(srv, "UNIX_SOCKET_PATH", "unix-socket-path", "unix socket of the gRPC server; its directory must exist (default "+DefaultSocketPath+")", strField(func(c *Config) *string { return &c.SocketPath })),
		mk(srv, "TOKEN_URL", "token-url", "IAM token endpoint (default "+kpkey.DefaultTokenURL+")", strField(func(c *Config) *string { return &c.TokenURL })),
		mk(srv, "TOKEN_URL_CA_FILE", "token-url-ca-file", "PEM CA bundle trusted for the token endpoint (default: system roots)", strField(func(c *Config) *string { return &c.TokenCAFile })),
		// No flag: an API key on a command line is visible to every user of the host.
		mk(srv, "API_KEY", "", "", strField(func(c *Config) *string { return &c.APIKey })),
		mk(srv, "HEALTHZ_PATH", "healthz-path", "liveness path on the health port; readiness is /readyz (default "+DefaultHealthzPath+")", strField(func(c *Config) *string { return &c.HealthzPath })),
		mk(srv, "HEALTHZ_PORT", "healthz-port", "loopback port of the health server, 0 for any free one (default "+strconv.Itoa(DefaultHealthzPort)+")", intField(0, func(c *Config) *int { return &c.HealthzPort })),
		ignored(srv, "CACHE_TIMEOUT_IN_HOURS", "KMS v2 caches DEKs in kube-apiserver, the plug-in keeps none"),
		mk(srv, "MAX_RETRIES", "max-retries", "retries of one Key Protect call after a connection error, 429 or 5xx (default "+strconv.Itoa(DefaultMaxRetries)+")", intField(0, func(c *Config) *int { return &c.MaxRetries })),
		mk(kpc, "CRK_ID", "crk-id", "id of the Key Protect root key (CRK) that wraps the DEKs (required)", strField(func(c *Config) *string { return &c.CRKID })),
		mk(kpc, "URL", "kp-url", "Key Protect base URL, e.g. https://us-south.kms.cloud.ibm.com (required)", strField(func(c *Config) *string { return &c.KPURL })),
		mk(kpc, "KP_CA_FILE", "kp-ca-file", "PEM CA bundle trusted for Key Protect (default: system roots)", strField(func(c *Config) *string { return &c.KPCAFile })),
		mk(kpc, "INSTANCE_ID", "instance-id", "Key Protect instance id (required)", strField(func(c *Config) *string { return &c.InstanceID })),
		mk(lg, "LOG_LEVEL", "log-level", "debug, info, warn or error (default info)", strField(func(c *Config) *string { return &c.LogLevel })),
		mk(lg, "LOG_ALL_VALUES", "log-all-values", "accepted for the runbook's file; key material, ciphertexts and the API key are never logged", boolField(func(c *Config) *bool { return &c.LogAllValues })),
	}
}

func defaults() Config {
	return Config{SocketPath: DefaultSocketPath, TokenURL: kpkey.DefaultTokenURL, HealthzPath: DefaultHealthzPath,
		HealthzPort: DefaultHealthzPort, MaxRetries: DefaultMaxRetries, LogLevel: "info", KeyCheckInterval: DefaultKeyCheckInterval}
}

// ErrHelp is Load's answer to -h and --help: print Usage.
var ErrHelp = errors.New("help requested")

type flagValues struct {
	configFile, apiKeyFile *string
	allowInsecure          *bool
	keyCheck               *time.Duration
	healthzHost            *string
	vals                   map[string]*string
}

func newFlagSet() (*flag.FlagSet, flagValues) {
	fs := flag.NewFlagSet("keysync-kms-plugin", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	v := flagValues{
		configFile:    fs.String("config", "", "the runbook's kmsplugin-config.yaml (env "+EnvConfigFile+")"),
		apiKeyFile:    fs.String("api-key-file", "", "file holding the API key (overrides SERVER_CONFIG.API_KEY and "+EnvPrefix+"API_KEY)"),
		allowInsecure: fs.Bool("allow-insecure-kp", false, "accept http URLs and a token host that is neither IAM's nor Key Protect's (labs with a mock Key Protect only; env "+EnvPrefix+"ALLOW_INSECURE_KP)"),
		keyCheck:      fs.Duration("key-check-interval", DefaultKeyCheckInterval, "how long Status and readiness reuse a look at the root key"),
		healthzHost:   fs.String("healthz-host", DefaultHealthzHost, "the IP address the health server binds (HEALTHZ_PORT on it)"),
		vals:          map[string]*string{},
	}
	for _, f := range fields() {
		if f.flag != "" {
			v.vals[f.key] = fs.String(f.flag, "", f.usage+" (env "+f.env()+", file "+f.name()+")")
		}
	}
	return fs, v
}

// Usage describes the flags, the environment and the config file.
func Usage() string {
	fs, _ := newFlagSet()
	var b strings.Builder
	b.WriteString(`Usage: keysync-kms-plugin [flags]

A KMS v2 plug-in for kube-apiserver: wraps kube-apiserver's DEKs with an IBM Key Protect root
key (CRK). Settings come from flags, then KEYSYNC_KMS_<FIELD> environment variables, then the
runbook's kmsplugin-config.yaml (--config or $config_file), then defaults:

  SERVER_CONFIG: UNIX_SOCKET_PATH, TOKEN_URL, TOKEN_URL_CA_FILE, API_KEY, HEALTHZ_PATH,
                 HEALTHZ_PORT, MAX_RETRIES (CACHE_TIMEOUT_IN_HOURS: ignored under KMS v2)
  KP_CONFIG:     CRK_ID, URL, KP_CA_FILE, INSTANCE_ID
  LOGGER:        LOG_LEVEL, LOG_ALL_VALUES (never logs key material or the API key)

The API key is never a flag: API_KEY, KEYSYNC_KMS_API_KEY or --api-key-file. Health on
127.0.0.1:HEALTHZ_PORT (--healthz-host): HEALTHZ_PATH and /livez (liveness), /readyz (Key Protect answers and
the root key is active). Status reports key_id <crk id>:<current version id>.

Flags:
`)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	return b.String()
}

// Load builds the configuration from args (without the program name), the environment
// (getenv) and the config file named by --config or $config_file, then validates it:
// every error wraps ErrInvalidConfig and never contains the API key. Precedence per setting:
// flag > environment > file > default.
func Load(args []string, getenv func(string) string) (Config, error) {
	fs, fl := newFlagSet()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, ErrHelp
		}
		return Config{}, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	configFile, apiKeyFile, allowInsecure, keyCheck, flagVals := fl.configFile, fl.apiKeyFile, fl.allowInsecure, fl.keyCheck, fl.vals
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("%w: unexpected arguments %q", ErrInvalidConfig, fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	c := defaults()
	c.ConfigFile = getenv(EnvConfigFile)
	if set["config"] {
		c.ConfigFile = *configFile
	}
	if c.ConfigFile != "" {
		data, err := os.ReadFile(c.ConfigFile)
		if err != nil {
			return Config{}, fmt.Errorf("%w: failed to read config file: %w", ErrInvalidConfig, err)
		}
		if err := c.applyFile(data); err != nil {
			return Config{}, err
		}
		if st, err := os.Stat(c.ConfigFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			c.Warnings = append(c.Warnings, fmt.Sprintf("config file %s is readable by group or others (mode %#o) and may hold the API key: chmod 600 it", c.ConfigFile, st.Mode().Perm()))
		}
	}
	for _, f := range fields() {
		if f.v1Only != "" {
			continue
		}
		v, ok := getenv(f.env()), false
		if v != "" {
			ok = true
		}
		if f.flag != "" && set[f.flag] {
			v, ok = *flagVals[f.key], true
		}
		if !ok {
			continue
		}
		if err := f.set(&c, v); err != nil {
			return Config{}, fmt.Errorf("%w: %s %v", ErrInvalidConfig, f.key, err)
		}
	}
	if set["api-key-file"] {
		data, err := os.ReadFile(*apiKeyFile)
		if err != nil {
			return Config{}, fmt.Errorf("%w: failed to read --api-key-file: %w", ErrInvalidConfig, err)
		}
		c.APIKey = strings.TrimSpace(string(data))
	}
	c.AllowInsecureKP = *allowInsecure || parseBoolEnv(getenv(EnvPrefix+"ALLOW_INSECURE_KP"))
	c.KeyCheckInterval = *keyCheck
	c.HealthzHost = *fl.healthzHost
	if c.LogAllValues {
		c.Warnings = append(c.Warnings, "LOGGER.LOG_ALL_VALUES is true: ignored for secrets, the plug-in never logs key material, ciphertexts, tokens or the API key")
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func parseBoolEnv(v string) bool {
	b, _ := strconv.ParseBool(strings.TrimSpace(v))
	return b
}

// applyFile reads the runbook's YAML: the three sections with their known fields. An
// unknown section or field is an error; a field without meaning under KMS v2 is ignored
// with a warning naming it.
func (c *Config) applyFile(data []byte) error {
	var doc map[string]any
	// sigs.k8s.io/yaml converts to JSON first: its errors name lines, never values.
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%w: config file %s is not valid YAML: %v", ErrInvalidConfig, c.ConfigFile, err)
	}
	known := map[string]map[string]field{}
	for _, f := range fields() {
		if known[f.section] == nil {
			known[f.section] = map[string]field{}
		}
		known[f.section][f.key] = f
	}
	var unknown, ignored []string
	for _, section := range sortedKeys(doc) {
		fieldsOf, ok := known[section]
		if !ok {
			unknown = append(unknown, section)
			continue
		}
		if doc[section] == nil {
			continue
		}
		values, ok := doc[section].(map[string]any)
		if !ok {
			return fmt.Errorf("%w: %s must be a mapping of fields", ErrInvalidConfig, section)
		}
		for _, key := range sortedKeys(values) {
			f, ok := fieldsOf[key]
			if !ok {
				unknown = append(unknown, section+"."+key)
				continue
			}
			if f.v1Only != "" {
				ignored = append(ignored, f.name()+" ("+f.v1Only+")")
				continue
			}
			v, err := scalar(values[key])
			if err != nil {
				return fmt.Errorf("%w: %s %v", ErrInvalidConfig, f.name(), err)
			}
			if err := f.set(c, v); err != nil {
				return fmt.Errorf("%w: %s %v", ErrInvalidConfig, f.name(), err)
			}
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%w: config file %s has unknown fields: %s (known: %s)", ErrInvalidConfig, c.ConfigFile, strings.Join(unknown, ", "), knownNames())
	}
	if len(ignored) > 0 {
		c.Warnings = append(c.Warnings, "ignored under KMS v2: "+strings.Join(ignored, "; "))
	}
	return nil
}

func knownNames() string {
	var out []string
	for _, f := range fields() {
		out = append(out, f.name())
	}
	return strings.Join(out, ", ")
}

// scalar renders a YAML scalar as the string a flag would carry; null is "".
func scalar(v any) (string, error) {
	switch x := v.(type) {
	case nil:
		return "", nil
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	}
	return "", errors.New("must be a single value, not a list or mapping")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// KP is the Key Protect part of c as the shared kp-key contract's Config.
func (c Config) KP() kpkey.Config {
	return kpkey.Config{URL: c.KPURL, InstanceID: c.InstanceID, APIKey: c.APIKey, TokenURL: c.TokenURL}
}

// Validate checks what can be checked before serving: required fields, URLs and where the
// API key may go (kpkey's endpoint policy unless AllowInsecureKP), readable CA files, the
// socket's directory, the log level and the health path.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for _, f := range []struct{ name, val string }{
		{"KP_CONFIG.CRK_ID", c.CRKID}, {"KP_CONFIG.URL", c.KPURL}, {"KP_CONFIG.INSTANCE_ID", c.InstanceID},
		{"SERVER_CONFIG.API_KEY", c.APIKey}, {"SERVER_CONFIG.UNIX_SOCKET_PATH", c.SocketPath},
	} {
		if f.val == "" {
			bad("%s is missing", f.name)
		}
	}
	if c.KPURL != "" {
		// Missing fields are reported above; placeholders let the URLs be checked anyway.
		kc := c.KP()
		kc.InstanceID, kc.APIKey = "-", "-"
		if err := kc.Validate(); err != nil {
			bad("%s", runbookNames(err))
		} else if err := kc.CheckEndpoints(); err != nil && !c.AllowInsecureKP {
			bad("%s (--allow-insecure-kp accepts it, for labs with a mock Key Protect only)", runbookNames(err))
		}
	}
	for _, f := range []struct{ name, path string }{{"SERVER_CONFIG.TOKEN_URL_CA_FILE", c.TokenCAFile}, {"KP_CONFIG.KP_CA_FILE", c.KPCAFile}} {
		if f.path == "" {
			continue
		}
		if _, err := loadCAFile(f.path); err != nil {
			bad("%s: %v", f.name, err)
		}
	}
	if c.SocketPath != "" {
		dir := filepath.Dir(c.SocketPath)
		if st, err := os.Stat(dir); err != nil {
			bad("SERVER_CONFIG.UNIX_SOCKET_PATH %s: its directory cannot be used: %v", c.SocketPath, err)
		} else if !st.IsDir() {
			bad("SERVER_CONFIG.UNIX_SOCKET_PATH %s: %s is not a directory", c.SocketPath, dir)
		}
		if len(c.SocketPath) > 107 {
			bad("SERVER_CONFIG.UNIX_SOCKET_PATH is %d bytes long, unix sockets allow 107", len(c.SocketPath))
		}
	}
	if !strings.HasPrefix(c.HealthzPath, "/") || c.HealthzPath == "/readyz" {
		bad("SERVER_CONFIG.HEALTHZ_PATH %q must start with / and must not be /readyz", c.HealthzPath)
	}
	if c.HealthzPort > 65535 {
		bad("SERVER_CONFIG.HEALTHZ_PORT %d is not a port", c.HealthzPort)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("LOGGER.LOG_LEVEL: %v", err)
	}
	if c.HealthzHost != "" && net.ParseIP(c.HealthzHost) == nil {
		bad("--healthz-host must be an IP address")
	}
	if c.KeyCheckInterval < 0 {
		bad("--key-check-interval must not be negative")
	}
	if len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, e := range errs {
			msgs[i] = e.Error()
		}
		return fmt.Errorf("%w: %s", ErrInvalidConfig, strings.Join(msgs, "; "))
	}
	return nil
}

// runbookNames rewrites a kpkey.Config error (which names keyprotect-config's JSON fields) with
// the runbook's field names.
func runbookNames(err error) string {
	return strings.NewReplacer(kpkey.ErrInvalidConfig.Error()+": ", "", kpkey.ErrInsecureConfig.Error()+": ", "",
		"keyprotect-url", "KP_CONFIG.URL", "token-url", "SERVER_CONFIG.TOKEN_URL",
		"instance-id", "KP_CONFIG.INSTANCE_ID", "apikey", "SERVER_CONFIG.API_KEY").Replace(err.Error())
}
