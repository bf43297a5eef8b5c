package conformance

import (
	"context"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/kp"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// kpConfig is the keyprotect-config the synchronizer uses (mockkp as the cluster reaches it).
func (c *Context) kpConfig() kpkey.Config {
	url, tokenURL := c.Lab.MockKPClusterURL, c.Lab.MockKPClusterTokenURL
	if url == "" {
		url = c.Lab.MockKPURL
	}
	if tokenURL == "" {
		tokenURL = c.Lab.MockKPTokenURL
	}
	return kpkey.Config{URL: url, InstanceID: c.Lab.KPInstanceID, APIKey: c.Lab.KPAPIKey, TokenURL: tokenURL}
}

// kpLocalConfig is mockkp as the suites reach it.
func (c *Context) kpLocalConfig() kpkey.Config {
	return kpkey.Config{URL: c.Lab.MockKPURL, InstanceID: c.Lab.KPInstanceID, APIKey: c.Lab.KPAPIKey, TokenURL: c.Lab.MockKPTokenURL}
}

func (c *Context) requireKP(t T) {
	t.Helper()
	c.require(t, lab.CapMockKP)
	if missing := missingKP(c.Lab); len(missing) > 0 {
		t.Fatalf("the lab has capability %s but its env file lacks %v, which kp-key features need", lab.CapMockKP, missing)
	}
}

// missingKP lists the env file keys kp-key features need that env lacks.
func missingKP(env lab.Env) []string {
	var missing []string
	for _, f := range []struct{ k, v string }{{"MOCKKP_URL", env.MockKPURL}, {"MOCKKP_ADMIN_URL", env.MockKPAdminURL},
		{"KP_INSTANCE_ID", env.KPInstanceID}, {"KP_APIKEY", env.KPAPIKey}, {"KP_ROOT_KEY_ID", env.KPRootKeyID}} {
		if f.v == "" {
			missing = append(missing, f.k)
		}
	}
	return missing
}

// putKPConfig creates (or replaces, restoring at cleanup) keyprotect-config.
func (c *Context) putKPConfig(ctx context.Context, t T, s *scope) {
	t.Helper()
	cfgSecret, err := secrets.KPConfig(c.Namespace, c.RunID, c.kpConfig())
	if err != nil {
		t.Fatalf("failed to build keyprotect-config: %v", err)
	}
	s.secrets.MustPut(ctx, t, cfgSecret)
}

func (c *Context) unwraps(ctx context.Context, t T) int64 {
	t.Helper()
	counts, err := kp.Counters(ctx, nil, c.Lab.MockKPAdminURL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return counts["unwrap"]
}
