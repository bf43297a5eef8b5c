package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/IBM/keyprotect-go-client/iam"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/names"
)

const kpConfigFix = "create Secret " + names.KPConfigSecret + " with key " + names.KPConfigKey +
	` holding {"keyprotect-url": "https://<region>.kms.cloud.ibm.com", "instance-id": "...", "apikey": "..."}`

// loadKPConfig reads and validates keyprotect-config. A nil Result means cfg is usable.
func loadKPConfig(ctx context.Context, e *Env) (kpkey.Config, *Result) {
	what := "Secret " + e.Namespace + "/" + names.KPConfigSecret
	s, err := e.Client.CoreV1().Secrets(e.Namespace).Get(ctx, names.KPConfigSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		r := missingKPConfig(ctx, e, what)
		return kpkey.Config{}, &r
	}
	if err != nil {
		r := apiFail("", what, err, "")
		return kpkey.Config{}, &r
	}
	data, has := s.Data[names.KPConfigKey]
	if !has {
		keys := make([]string, 0, len(s.Data))
		for k := range s.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		r := fail("", fmt.Sprintf("%s has no %s (keys: %s)", what, names.KPConfigKey, strings.Join(keys, ", ")), kpConfigFix)
		return kpkey.Config{}, &r
	}
	cfg, err := kpkey.ParseConfig(data)
	if err != nil {
		// kpkey's errors never quote the document (it holds the API key).
		r := fail("", fmt.Sprintf("%s: %s cannot be parsed: %v", what, names.KPConfigKey, err), kpConfigFix)
		return kpkey.Config{}, &r
	}
	return cfg, nil
}

// missingKPConfig fails when kp-key Secrets exist (nothing can unwrap them) and warns otherwise.
func missingKPConfig(ctx context.Context, e *Env, what string) Result {
	list, err := e.Client.CoreV1().Secrets(e.Namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=" + names.SecretTypeKPKey})
	if err == nil && len(list.Items) > 0 {
		return fail("", fmt.Sprintf("%s not found, and %d %s Secret(s) cannot be unwrapped without it", what, len(list.Items), names.SecretTypeKPKey), kpConfigFix)
	}
	return warn("", what+" not found: "+names.SecretTypeKPKey+" Secrets would not be unwrapped (none exists now)", kpConfigFix)
}

// safeURL prints a URL without user info, query or fragment.
func safeURL(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

func checkKPConfig(ctx context.Context, e *Env) []Result {
	cfg, r := loadKPConfig(ctx, e)
	if r != nil {
		return []Result{*r}
	}
	var out []Result
	shown := map[string]string{}
	for _, f := range []struct{ name, val string }{{"keyprotect-url", cfg.URL}, {"token-url", cfg.TokenURL}} {
		if f.val == "" {
			continue
		}
		u, err := url.Parse(f.val)
		if err != nil {
			out = append(out, fail("", f.name+" is not a URL", kpConfigFix))
			continue
		}
		shown[f.name] = safeURL(u)
		if u.Scheme == "https" {
			continue
		}
		found := fmt.Sprintf("%s is %s, not https: the API key and the unwrapped keys would cross the network in clear", f.name, safeURL(u))
		fix := "use the https endpoint (https://<region>.kms.cloud.ibm.com, or the private endpoint https://private.<region>.kms.cloud.ibm.com)"
		if e.AllowHTTPKP {
			out = append(out, warn("", found+" (allowed by --allow-http-kp)", fix))
		} else {
			out = append(out, fail("", found, fix))
		}
	}
	found := fmt.Sprintf("%s parses: keyprotect-url %s, instance-id %s, apikey set (not shown)", names.KPConfigKey, shown["keyprotect-url"], cfg.InstanceID)
	if cfg.TokenURL != "" {
		found += ", token-url " + shown["token-url"]
	}
	if len(out) == 0 {
		return []Result{ok("", found)}
	}
	return out
}

// checkKPAccess gets an IAM token with the configured API key and reads key metadata from the
// instance through the official client.
func checkKPAccess(ctx context.Context, e *Env) []Result {
	if !e.CheckKP {
		return []Result{skip("", "pass --check-kp to get an IAM token and read key metadata from Key Protect with keyprotect-config")}
	}
	cfg, r := loadKPConfig(ctx, e)
	if r != nil {
		if r.Status == Fail {
			return []Result{fail("", "cannot reach Key Protect: keyprotect-config is not usable (see kp-config)", "fix keyprotect-config first")}
		}
		return []Result{skip("", "no keyprotect-config")}
	}
	tokenURL := cfg.TokenURL
	if tokenURL == "" {
		tokenURL = kpkey.DefaultTokenURL
	}
	tokenHost := tokenURL
	if u, err := url.Parse(tokenURL); err == nil {
		tokenHost = safeURL(u)
	}
	ts := &iam.IAMTokenSource{TokenURL: tokenURL, APIKey: cfg.APIKey}
	tok, err := ts.Token()
	if err != nil {
		var ie iam.Error
		if errors.As(err, &ie) {
			status := 0
			if ie.HTTPResponse != nil {
				status = ie.HTTPResponse.StatusCode
			}
			return []Result{fail("IAM", fmt.Sprintf("IAM at %s refused the API key (HTTP %d, %s: %s)", tokenHost, status, ie.ErrorCode, clip(ie.ErrorMessage)),
				"the apikey in keyprotect-config is wrong, expired or deleted: create an API key for the synchronizer's service ID and update the Secret")}
		}
		return []Result{fail("IAM", fmt.Sprintf("failed to get an IAM token from %s: %s", tokenHost, clip(err.Error())),
			"check that the cluster can reach the IAM endpoint (token-url) and that it is right")}
	}
	client, err := kpkey.NewClient(cfg, nil)
	if err != nil {
		return []Result{fail("Key Protect", clip(err.Error()), kpConfigFix)}
	}
	authCtx := kp.NewContextWithAuth(ctx, tok.TokenType+" "+tok.AccessToken)
	keys, err := client.GetKeys(authCtx, 1, 0)
	if err != nil {
		var ke *kp.Error
		msg := clip(err.Error())
		if errors.As(err, &ke) {
			msg = fmt.Sprintf("HTTP %d %s", ke.StatusCode, clip(ke.Message))
		}
		return []Result{ok("IAM", "IAM issued a token for the API key"),
			fail("Key Protect", fmt.Sprintf("Key Protect at %s instance %s refused to list keys: %s", cfg.URL, cfg.InstanceID, msg),
				"check instance-id and that the API key's service ID has at least Reader access to the Key Protect instance")}
	}
	n := 0
	if keys != nil {
		n = keys.Metadata.NumberOfKeys
	}
	return []Result{ok("IAM", "IAM issued a token for the API key"),
		ok("Key Protect", fmt.Sprintf("Key Protect instance %s answers a metadata call (%d key(s) listed)", cfg.InstanceID, n))}
}
