package conformance

import (
	"context"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/kp"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// kpConfig is the keyprotect-config the synchronizer uses (mockkp as the cluster reaches it).
// Where the lab makes IAM's and Key Protect's public names reach mockkp (capability
// kp-public-names) it holds the runbook's fields only: Key Protect's public URL and no
// token-url, so the synchronizer uses its client's default IAM endpoint.
func (c *Context) kpConfig() kpkey.Config {
	if c.Lab.Has(lab.CapKPPublicNames) && c.Lab.KPPublicURL != "" {
		return kpkey.Config{URL: c.Lab.KPPublicURL, InstanceID: c.Lab.KPInstanceID, APIKey: c.Lab.KPAPIKey}
	}
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

// kpTarget is the Key Protect a kp feature uses.
type kpTarget struct {
	// live: the cluster's own keyprotect-config, which the run never touches.
	live bool
	// wrap reaches it from the runner (to wrap the feature's key); rootKeyID is the root key.
	wrap      kpkey.Config
	rootKeyID string
}

// useKP decides, in a kp feature's Setup, which Key Protect it uses. Where keyprotect-config
// already exists in the synchronizer's namespace, it is the live configuration: the feature
// uses the cluster's real Key Protect through the operator's --kp-* settings (Context.KP) and
// never changes the Secret; without those settings (when wrap says the feature wraps a key) it
// skips and says which are missing. Only where no keyprotect-config exists (the labs) does the
// run create one, for the lab's mockkp (capability mockkp), and delete it at cleanup (tracked
// by s, so a failing or fatal step removes it too).
func (c *Context) useKP(ctx context.Context, t T, s *scope, wrap bool) kpTarget {
	t.Helper()
	_, err := c.Client.CoreV1().Secrets(c.Namespace).Get(ctx, names.KPConfigSecret, metav1.GetOptions{})
	switch {
	case err == nil:
		if !wrap {
			t.Logf("using the cluster's own %s/%s (never changed)", c.Namespace, names.KPConfigSecret)
			return kpTarget{live: true}
		}
		if missing := c.KP.missing(); len(missing) > 0 {
			t.Skipf("%s/%s exists: the run never changes the live configuration, so this feature needs the cluster's own Key Protect, and lacks %s",
				c.Namespace, names.KPConfigSecret, strings.Join(missing, ", "))
		}
		cfg, err := c.KP.config()
		if err != nil {
			t.Fatalf("%v", err)
		}
		t.Logf("using the cluster's own %s/%s (never changed) and its Key Protect %s", c.Namespace, names.KPConfigSecret, cfg.URL)
		return kpTarget{live: true, wrap: cfg, rootKeyID: c.KP.RootKeyID}
	case !apierrors.IsNotFound(err):
		t.Fatalf("failed to read %s/%s: %v", c.Namespace, names.KPConfigSecret, err)
	}
	c.require(t, lab.CapMockKP)
	if missing := missingKP(c.Lab); len(missing) > 0 {
		t.Fatalf("the lab has capability %s but its env file lacks %v, which kp-key features need", lab.CapMockKP, missing)
	}
	cfgSecret, err := secrets.KPConfig(c.Namespace, c.RunID, c.kpConfig())
	if err != nil {
		t.Fatalf("failed to build keyprotect-config: %v", err)
	}
	// Create, never Put: a keyprotect-config that appeared meanwhile is not replaced.
	s.secrets.MustCreate(ctx, t, cfgSecret)
	return kpTarget{wrap: c.kpLocalConfig(), rootKeyID: c.Lab.KPRootKeyID}
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

func (c *Context) unwraps(ctx context.Context, t T) int64 {
	t.Helper()
	counts, err := kp.Counters(ctx, nil, c.Lab.MockKPAdminURL)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return counts["unwrap"]
}
