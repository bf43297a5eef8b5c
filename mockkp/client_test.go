package mockkp_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/IBM/keyprotect-go-client/iam"

	"github.com/keysync-dev/keysync/mockkp"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

func b64(s string) []byte { return []byte(base64.StdEncoding.EncodeToString([]byte(s))) }

func TestCreateAndGetKeys(t *testing.T) {
	env := mockkptest.Start(t)
	c := env.Client(t, nil)
	ctx := t.Context()
	material := bytes.Repeat([]byte{7}, 32)
	tests := []struct {
		name        string
		create      func() (*kp.Key, error)
		extractable bool
		imported    bool
		wantPayload []byte // GetKey payload for standard keys
	}{
		{"root", func() (*kp.Key, error) { return c.CreateRootKey(ctx, "root-1", nil) }, false, false, nil},
		{"standard", func() (*kp.Key, error) { return c.CreateStandardKey(ctx, "std-1", nil) }, true, false, nil},
		{"imported root", func() (*kp.Key, error) {
			return c.CreateImportedRootKey(ctx, "iroot-1", nil, base64.StdEncoding.EncodeToString(material), "", "")
		}, false, true, nil},
		{"imported standard", func() (*kp.Key, error) {
			return c.CreateImportedStandardKey(ctx, "istd-1", nil, base64.StdEncoding.EncodeToString([]byte("secret")))
		}, true, true, []byte("secret")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := tc.create()
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if k.ID == "" || k.Extractable != tc.extractable || k.Imported != tc.imported || k.State != int(kp.Active) {
				t.Fatalf("created key = id %q extractable %v imported %v state %d", k.ID, k.Extractable, k.Imported, k.State)
			}
			if k.KeyVersion == nil || k.KeyVersion.ID != k.ID {
				t.Fatalf("first key version = %+v, want the key id %s", k.KeyVersion, k.ID)
			}
			got, err := c.GetKey(ctx, k.ID)
			if err != nil {
				t.Fatalf("GetKey: %v", err)
			}
			if got.ID != k.ID || got.Name != k.Name {
				t.Fatalf("GetKey = %s %s, want %s %s", got.ID, got.Name, k.ID, k.Name)
			}
			if tc.extractable != (got.Payload != "") {
				t.Fatalf("GetKey payload present = %v, want %v", got.Payload != "", tc.extractable)
			}
			if tc.wantPayload != nil {
				p, _ := base64.StdEncoding.DecodeString(got.Payload)
				if !bytes.Equal(p, tc.wantPayload) {
					t.Fatalf("GetKey payload differs from the imported one")
				}
			}
			md, err := c.GetKeyMetadata(ctx, k.ID)
			if err != nil {
				t.Fatalf("GetKeyMetadata: %v", err)
			}
			if md.Payload != "" || md.ID != k.ID {
				t.Fatalf("metadata = id %s payload present %v", md.ID, md.Payload != "")
			}
		})
	}
	keys, err := c.GetKeys(ctx, 0, 0)
	if err != nil {
		t.Fatalf("GetKeys: %v", err)
	}
	if want := len(tests) + 1; len(keys.Keys) != want || keys.Metadata.NumberOfKeys != want {
		t.Fatalf("GetKeys returned %d keys (total %d), want %d", len(keys.Keys), keys.Metadata.NumberOfKeys, want)
	}
	page, err := c.GetKeys(ctx, 2, 1)
	if err != nil {
		t.Fatalf("GetKeys page: %v", err)
	}
	if len(page.Keys) != 2 || page.Keys[0].ID != keys.Keys[1].ID {
		t.Fatalf("GetKeys(limit 2, offset 1) = %d keys, want 2 starting at the second", len(page.Keys))
	}
	alias, err := c.CreateKeyWithAliases(ctx, "aliased", nil, false, []string{"my-alias"})
	if err != nil {
		t.Fatalf("CreateKeyWithAliases: %v", err)
	}
	byAlias, err := c.GetKey(ctx, "my-alias")
	if err != nil || byAlias.ID != alias.ID {
		t.Fatalf("GetKey(alias) = %v, %v; want key %s", byAlias, err, alias.ID)
	}
}

func TestWrapUnwrapAcrossRotation(t *testing.T) {
	env := mockkptest.Start(t)
	c := env.Client(t, nil)
	ctx := t.Context()
	id := env.RootKeyID
	aad := []string{"ns/image-key-synchronizer", "secret/a"}
	plain := b64("-----BEGIN PRIVATE KEY-----\nv1\n-----END PRIVATE KEY-----\n")

	ctV1, err := c.Wrap(ctx, id, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	resV1, err := c.WrapV2(ctx, id, plain, &aad)
	if err != nil {
		t.Fatalf("WrapV2: %v", err)
	}
	if resV1.KeyVersion == nil || resV1.KeyVersion.ID != id {
		t.Fatalf("WrapV2 key version = %+v, want %s", resV1.KeyVersion, id)
	}
	// The ciphertext has the service's shape and names its version.
	var shape map[string]string
	rawCT, err := base64.StdEncoding.DecodeString(string(ctV1))
	if err != nil || json.Unmarshal(rawCT, &shape) != nil {
		t.Fatalf("ciphertext is not base64 JSON")
	}
	for _, f := range []string{"ciphertext", "iv", "version", "handle"} {
		if shape[f] == "" {
			t.Fatalf("ciphertext JSON lacks %q", f)
		}
	}
	if shape["handle"] != id {
		t.Fatalf("ciphertext handle = %q, want version %s", shape["handle"], id)
	}

	if err := c.Rotate(ctx, id, ""); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	versions, err := c.ListKeyVersions(ctx, id, nil)
	if err != nil {
		t.Fatalf("ListKeyVersions: %v", err)
	}
	if len(versions.KeyVersion) != 2 || versions.KeyVersion[1].ID != id {
		t.Fatalf("versions after rotate = %+v, want 2 with the original last", versions.KeyVersion)
	}
	latest := versions.KeyVersion[0].ID
	resV2, err := c.WrapV2(ctx, id, plain, nil)
	if err != nil {
		t.Fatalf("WrapV2 after rotate: %v", err)
	}
	if resV2.KeyVersion == nil || resV2.KeyVersion.ID != latest {
		t.Fatalf("WrapV2 after rotate used version %+v, want %s", resV2.KeyVersion, latest)
	}
	key, err := c.GetKey(ctx, id)
	if err != nil || key.KeyVersion.ID != latest || key.LastRotateDate == nil {
		t.Fatalf("GetKey after rotate = %+v, %v", key, err)
	}

	tests := []struct {
		name          string
		ciphertext    []byte
		aad           *[]string
		wantRewrapped bool
	}{
		{"old version", ctV1, nil, true},
		{"old version with aad", []byte(resV1.CipherText), &aad, true},
		{"latest version", []byte(resV2.CipherText), nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Unwrap(ctx, id, tc.ciphertext, tc.aad)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("Unwrap = %v; plaintext matches %v", err, bytes.Equal(got, plain))
			}
			got, rewrapped, err := c.UnwrapV2(ctx, id, tc.ciphertext, tc.aad)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("UnwrapV2 = %v; plaintext matches %v", err, bytes.Equal(got, plain))
			}
			if (len(rewrapped) > 0) != tc.wantRewrapped {
				t.Fatalf("UnwrapV2 rewrapped present = %v, want %v", len(rewrapped) > 0, tc.wantRewrapped)
			}
			if !tc.wantRewrapped {
				return
			}
			again, rr, err := c.UnwrapV2(ctx, id, rewrapped, tc.aad)
			if err != nil || !bytes.Equal(again, plain) || len(rr) != 0 {
				t.Fatalf("UnwrapV2(rewrapped) = %v; matches %v; rewrapped again %v", err, bytes.Equal(again, plain), len(rr) > 0)
			}
		})
	}

	// rewrap action (raw: the client has no call for it).
	body, _ := json.Marshal(map[string]any{"ciphertext": string(ctV1)})
	res := raw(t, env, http.MethodPost, "/api/v2/keys/"+id+"/actions/rewrap", string(body), nil)
	var rw struct {
		Ciphertext string `json:"ciphertext"`
		KeyVersion struct {
			ID string `json:"id"`
		} `json:"keyVersion"`
	}
	if res.status != http.StatusOK || json.Unmarshal(res.body, &rw) != nil || rw.KeyVersion.ID != latest {
		t.Fatalf("rewrap = %d %s, want 200 under %s", res.status, res.code, latest)
	}
	got, err := c.Unwrap(ctx, id, []byte(rw.Ciphertext), nil)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Unwrap(rewrapped) = %v", err)
	}
}

func TestWrapCreateDEK(t *testing.T) {
	env := mockkptest.Start(t)
	c := env.Client(t, nil)
	dek, ct, err := c.WrapCreateDEK(t.Context(), env.RootKeyID, nil)
	if err != nil {
		t.Fatalf("WrapCreateDEK: %v", err)
	}
	raw, err := base64.StdEncoding.DecodeString(string(dek))
	if err != nil || len(raw) != 32 {
		t.Fatalf("generated DEK is %d bytes (%v), want 32", len(raw), err)
	}
	got, err := c.Unwrap(t.Context(), env.RootKeyID, ct, nil)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap(generated) = %v, matches %v", err, bytes.Equal(got, dek))
	}
}

func TestKeyStates(t *testing.T) {
	env := mockkptest.Start(t)
	c := env.Client(t, nil)
	ctx := t.Context()
	id := env.RootKeyID
	plain := b64("state test")
	ct, err := c.Wrap(ctx, id, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	steps := []struct {
		name      string
		do        func() error
		wantState int
		wrapErr   int // 0: wrap works
		unwrapErr int // 0: unwrap works
	}{
		{"disable", func() error { return c.DisableKey(ctx, id) }, int(kp.Suspended), 409, 409},
		{"enable", func() error { return c.EnableKey(ctx, id) }, int(kp.Active), 0, 0},
		{"delete", func() error { _, err := c.DeleteKey(ctx, id, kp.ReturnMinimal); return err }, int(kp.Destroyed), 410, 410},
		{"restore", func() error { _, err := c.RestoreKey(ctx, id); return err }, int(kp.Active), 0, 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			md, err := c.GetKeyMetadata(ctx, id)
			if err != nil || md.State != st.wantState {
				t.Fatalf("metadata state = %v (%v), want %d", md, err, st.wantState)
			}
			_, err = c.Wrap(ctx, id, plain, nil)
			if st.wrapErr == 0 && err != nil {
				t.Fatalf("Wrap: %v", err)
			}
			if st.wrapErr != 0 {
				if status, _ := kpStatus(t, err); status != st.wrapErr {
					t.Fatalf("Wrap status = %d, want %d", status, st.wrapErr)
				}
			}
			got, err := c.Unwrap(ctx, id, ct, nil)
			if st.unwrapErr == 0 && (err != nil || !bytes.Equal(got, plain)) {
				t.Fatalf("Unwrap: %v", err)
			}
			if st.unwrapErr != 0 {
				if status, _ := kpStatus(t, err); status != st.unwrapErr {
					t.Fatalf("Unwrap status = %d, want %d", status, st.unwrapErr)
				}
			}
		})
	}
	deleted, err := c.DeleteKey(ctx, id, kp.ReturnRepresentation)
	if err != nil || deleted == nil || deleted.State != int(kp.Destroyed) {
		t.Fatalf("DeleteKey(representation) = %+v, %v; want the destroyed key", deleted, err)
	}
}

func TestExpiredKeyIsDeactivated(t *testing.T) {
	clock := newFakeClock()
	env := mockkptest.Start(t, withClock(clock))
	c := env.Client(t, nil)
	ctx := t.Context()
	exp := clock.Now().Add(time.Hour)
	k, err := c.CreateKey(ctx, "expiring", &exp, false)
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	plain := b64("expiring")
	ct, err := c.Wrap(ctx, k.ID, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	clock.Advance(30 * time.Minute) // the token (1h) stays valid
	clock.Advance(31 * time.Minute)
	c2 := env.Client(t, nil) // fresh token at the new time
	md, err := c2.GetKeyMetadata(ctx, k.ID)
	if err != nil || md.State != int(kp.Deactivated) {
		t.Fatalf("state after expiry = %+v, %v; want %d", md, err, kp.Deactivated)
	}
	if status, code := kpStatus(t, func() error { _, err := c2.Wrap(ctx, k.ID, plain, nil); return err }()); status != 409 || code != mockkp.CodeKeyActionInvalidState {
		t.Fatalf("Wrap with expired key = %d %s, want 409", status, code)
	}
	got, err := c2.Unwrap(ctx, k.ID, ct, nil)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("Unwrap with deactivated key: %v", err)
	}
}

func TestErrorCodes(t *testing.T) {
	env := mockkptest.Start(t)
	c := env.Client(t, nil)
	ctx := t.Context()
	id := env.RootKeyID
	plain := b64("error codes")
	aad := []string{"a"}
	ct, err := c.Wrap(ctx, id, plain, &aad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	other, err := c.CreateRootKey(ctx, "other", nil)
	if err != nil {
		t.Fatalf("CreateRootKey: %v", err)
	}
	std, err := c.CreateStandardKey(ctx, "std", nil)
	if err != nil {
		t.Fatalf("CreateStandardKey: %v", err)
	}
	suspended, err := c.CreateRootKey(ctx, "suspended", nil)
	if err != nil || c.DisableKey(ctx, suspended.ID) != nil {
		t.Fatalf("failed to prepare a suspended key: %v", err)
	}
	gone, err := c.CreateRootKey(ctx, "gone", nil)
	if err == nil {
		_, err = c.DeleteKey(ctx, gone.ID, kp.ReturnMinimal)
	}
	if err != nil {
		t.Fatalf("failed to prepare a deleted key: %v", err)
	}
	tampered := tamper(t, string(ct))
	wrongInstance, err := kp.New(kp.ClientConfig{BaseURL: env.URL, APIKey: env.APIKey, TokenURL: env.TokenURL, InstanceID: "not-my-instance"}, nil)
	if err != nil {
		t.Fatalf("kp.New: %v", err)
	}

	clientCases := []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"get unknown key", func() error { _, err := c.GetKey(ctx, "no-such-key"); return err }, 404, mockkp.CodeKeyNotFound},
		{"get deleted key", func() error { _, err := c.GetKey(ctx, gone.ID); return err }, 410, mockkp.CodeKeyDeleted},
		{"unwrap tampered", func() error { _, err := c.Unwrap(ctx, id, []byte(tampered), &aad); return err }, 422, mockkp.CodeUnprocessableCipher},
		{"unwrap wrong aad", func() error { _, err := c.Unwrap(ctx, id, ct, &[]string{"b"}); return err }, 422, mockkp.CodeUnprocessableCipher},
		{"unwrap missing aad", func() error { _, err := c.Unwrap(ctx, id, ct, nil); return err }, 422, mockkp.CodeUnprocessableCipher},
		{"unwrap with other key", func() error { _, err := c.Unwrap(ctx, other.ID, ct, &aad); return err }, 422, mockkp.CodeUnprocessableCipher},
		{"unwrap garbage", func() error { _, err := c.Unwrap(ctx, id, []byte("bm90IGpzb24="), nil); return err }, 422, mockkp.CodeUnprocessableCipher},
		{"unwrap empty", func() error { _, err := c.Unwrap(ctx, id, nil, nil); return err }, 400, mockkp.CodeInvalidField},
		{"wrap suspended", func() error { _, err := c.Wrap(ctx, suspended.ID, plain, nil); return err }, 409, mockkp.CodeKeyActionInvalidState},
		{"rotate suspended", func() error { return c.Rotate(ctx, suspended.ID, "") }, 409, mockkp.CodeKeyActionInvalidState},
		{"disable suspended", func() error { return c.DisableKey(ctx, suspended.ID) }, 409, mockkp.CodeKeyActionInvalidState},
		{"enable active", func() error { return c.EnableKey(ctx, id) }, 409, mockkp.CodeKeyActionInvalidState},
		{"restore active", func() error { _, err := c.RestoreKey(ctx, id); return err }, 409, mockkp.CodeKeyActionInvalidState},
		{"wrap deleted", func() error { _, err := c.Wrap(ctx, gone.ID, plain, nil); return err }, 410, mockkp.CodeKeyDeleted},
		{"delete deleted", func() error { _, err := c.DeleteKey(ctx, gone.ID, kp.ReturnMinimal); return err }, 410, mockkp.CodeKeyDeleted},
		{"wrap standard key", func() error { _, err := c.Wrap(ctx, std.ID, plain, nil); return err }, 400, mockkp.CodeKeyRootRequired},
		{"rotate standard key", func() error { return c.Rotate(ctx, std.ID, "") }, 400, mockkp.CodeKeyRootRequired},
		{"rotate generated key with payload", func() error { return c.Rotate(ctx, id, base64.StdEncoding.EncodeToString(make([]byte, 32))) }, 400, mockkp.CodeInvalidField},
		{"create without name", func() error { _, err := c.CreateRootKey(ctx, "", nil); return err }, 400, mockkp.CodeInvalidField},
		{"create root with short payload", func() error {
			_, err := c.CreateImportedRootKey(ctx, "short", nil, base64.StdEncoding.EncodeToString([]byte("short")), "", "")
			return err
		}, 400, mockkp.CodeInvalidField},
		{"wrong instance", func() error { _, err := wrongInstance.GetKey(ctx, id); return err }, 403, mockkp.CodeUnauthorized},
		{"foreign token", func() error {
			_, err := c.GetKey(kp.NewContextWithAuth(ctx, "Bearer forged.token.sig"), id)
			return err
		}, 401, mockkp.CodeUnauthorized},
	}
	for _, tc := range clientCases {
		t.Run(tc.name, func(t *testing.T) {
			status, code := kpStatus(t, tc.call())
			if status != tc.status || code != tc.code {
				t.Fatalf("got %d %s, want %d %s", status, code, tc.status, tc.code)
			}
		})
	}

	rawCases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
		code                     string
	}{
		{"no token", "GET", "/api/v2/keys/" + id, "", map[string]string{"authorization": ""}, 401, mockkp.CodeUnauthorized},
		{"basic auth", "GET", "/api/v2/keys/" + id, "", map[string]string{"authorization": "Basic dXNlcjpwdw=="}, 401, mockkp.CodeUnauthorized},
		{"no instance", "GET", "/api/v2/keys/" + id, "", map[string]string{"bluemix-instance": ""}, 403, mockkp.CodeUnauthorized},
		{"bad json", "POST", "/api/v2/keys", "{", nil, 400, mockkp.CodeBadBody},
		{"two resources", "POST", "/api/v2/keys", `{"resources":[{"name":"a1"},{"name":"b1"}]}`, nil, 400, mockkp.CodeBadBody},
		{"wrap non-base64", "POST", "/api/v2/keys/" + id + "/actions/wrap", `{"plaintext":"not base64!"}`, nil, 400, mockkp.CodeInvalidField},
		{"wrap too large", "POST", "/api/v2/keys/" + id + "/actions/wrap", `{"plaintext":"` + base64.StdEncoding.EncodeToString(make([]byte, 7169)) + `"}`, nil, 400, mockkp.CodeInvalidField},
		{"unknown action", "POST", "/api/v2/keys/" + id + "/actions/explode", "", nil, 400, mockkp.CodeInvalidQueryParam},
		{"unknown query action", "POST", "/api/v2/keys/" + id + "?action=explode", "", nil, 400, mockkp.CodeInvalidQueryParam},
		{"bad limit", "GET", "/api/v2/keys?limit=0", "", nil, 400, mockkp.CodeInvalidQueryParam},
		{"unknown route", "GET", "/api/v3/keys", "", nil, 404, mockkp.CodeNotFound},
		{"method not allowed", "PUT", "/api/v2/keys/" + id, "", nil, 405, mockkp.CodeMethodNotAllowed},
	}
	for _, tc := range rawCases {
		t.Run("raw "+tc.name, func(t *testing.T) {
			res := raw(t, env, tc.method, tc.path, tc.body, tc.hdr)
			if res.status != tc.status || res.code != tc.code {
				t.Fatalf("got %d %q, want %d %s", res.status, res.code, tc.status, tc.code)
			}
		})
	}
}

// tamper flips one byte of the inner AES-GCM ciphertext and re-encodes the envelope.
func tamper(t *testing.T, ct string) string {
	t.Helper()
	rawCT, err := base64.StdEncoding.DecodeString(ct)
	if err != nil {
		t.Fatalf("failed to decode ciphertext: %v", err)
	}
	var env map[string]string
	if err := json.Unmarshal(rawCT, &env); err != nil {
		t.Fatalf("failed to decode ciphertext JSON: %v", err)
	}
	inner, err := base64.StdEncoding.DecodeString(env["ciphertext"])
	if err != nil || len(inner) == 0 {
		t.Fatalf("failed to decode inner ciphertext: %v", err)
	}
	inner[0] ^= 0x01
	env["ciphertext"] = base64.StdEncoding.EncodeToString(inner)
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatalf("failed to encode: %v", err)
	}
	return base64.StdEncoding.EncodeToString(out)
}

func TestIAM(t *testing.T) {
	env := mockkptest.Start(t)
	bad, err := kp.New(kp.ClientConfig{BaseURL: env.URL, APIKey: "unknown-key", TokenURL: env.URL + "/oidc/token", InstanceID: env.InstanceID}, nil)
	if err != nil {
		t.Fatalf("kp.New: %v", err)
	}
	_, err = bad.GetKey(t.Context(), env.RootKeyID)
	var ie iam.Error
	if !errors.As(err, &ie) {
		t.Fatalf("error %T %v is not an iam.Error", err, err)
	}
	if ie.ErrorCode != mockkp.IAMCodeAPIKeyNotFound || ie.HTTPResponse.StatusCode != 400 || ie.Context == nil || ie.Context.RequestID == "" {
		t.Fatalf("iam error = %s (%d), want %s 400 with a request id", ie.ErrorCode, ie.HTTPResponse.StatusCode, mockkp.IAMCodeAPIKeyNotFound)
	}
	if n := env.Server.Requests(mockkp.OpGet); n != 0 {
		t.Fatalf("a failed token still sent %d get requests", n)
	}

	forms := []struct {
		name, path, form string
		status           int
		code             string
	}{
		{"identity endpoint", "/identity/token", "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=" + env.APIKey, 200, ""},
		{"oidc endpoint", "/oidc/token", "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=" + env.APIKey, 200, ""},
		{"missing apikey", "/identity/token", "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey", 400, mockkp.IAMCodeMissingProperty},
		{"wrong grant", "/identity/token", "grant_type=password&apikey=x", 400, mockkp.IAMCodeUnsupportedGrant},
		{"unknown apikey", "/identity/token", "grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=nope", 400, mockkp.IAMCodeAPIKeyNotFound},
	}
	for _, tc := range forms {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := http.Post(env.URL+tc.path, "application/x-www-form-urlencoded", bytes.NewBufferString(tc.form))
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			defer resp.Body.Close()
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 200 {
				if body["token_type"] != "Bearer" || body["expires_in"] != float64(3600) || body["access_token"] == "" || body["expiration"] == nil {
					t.Fatalf("token body lacks fields: %v", keysOf(body))
				}
				return
			}
			if body["errorCode"] != tc.code || body["errorMessage"] == "" || body["context"] == nil {
				t.Fatalf("IAM error body = %v, want errorCode %s", body["errorCode"], tc.code)
			}
		})
	}
}

func keysOf(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	t.Run("expired token is rejected, a new one works", func(t *testing.T) {
		clock := newFakeClock()
		env := mockkptest.Start(t, withClock(clock))
		c := env.Client(t, nil)
		if _, err := c.GetKey(t.Context(), env.RootKeyID); err != nil {
			t.Fatalf("GetKey: %v", err)
		}
		clock.Advance(time.Hour + time.Second)
		// The client still holds the token (its own clock says it is fresh): the mock says 401.
		if status, code := kpStatus(t, func() error { _, err := c.GetKey(t.Context(), env.RootKeyID); return err }()); status != 401 || code != mockkp.CodeUnauthorized {
			t.Fatalf("expired token got %d %s, want 401", status, code)
		}
		if _, err := env.Client(t, nil).GetKey(t.Context(), env.RootKeyID); err != nil {
			t.Fatalf("GetKey with a fresh token: %v", err)
		}
		if n := env.Server.Requests(mockkp.OpToken); n != 2 {
			t.Fatalf("token requests = %d, want 2", n)
		}
	})
	t.Run("client refreshes a short-lived token", func(t *testing.T) {
		// expires_in 60: the client refreshes 60 s early, so it fetches a token per call.
		env := mockkptest.Start(t, mockkptest.WithOptions(func(o *mockkp.Options) { o.TokenTTL = 60 * time.Second }))
		c := env.Client(t, nil)
		const calls = 3
		for i := range calls {
			if _, err := c.GetKey(t.Context(), env.RootKeyID); err != nil {
				t.Fatalf("GetKey %d: %v", i, err)
			}
		}
		if n := env.Server.Requests(mockkp.OpToken); n != calls {
			t.Fatalf("token requests = %d, want %d (one refresh per call)", n, calls)
		}
	})
}

func TestCiphertextEnvelopeForms(t *testing.T) {
	env := mockkptest.Start(t)
	c := env.Client(t, nil)
	plain := b64("envelope forms")
	ct, err := c.Wrap(t.Context(), env.RootKeyID, plain, nil)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	rawCT, _ := base64.StdEncoding.DecodeString(string(ct))
	var fields map[string]string
	if err := json.Unmarshal(rawCT, &fields); err != nil {
		t.Fatalf("decode: %v", err)
	}
	reencode := func(mutate func(map[string]string)) string {
		m := map[string]string{}
		for k, v := range fields {
			m[k] = v
		}
		mutate(m)
		out, _ := json.MarshalIndent(m, "", "  ") // another layout: sorted keys, whitespace
		return base64.StdEncoding.EncodeToString(out)
	}
	tests := []struct {
		name   string
		ct     string
		status int // 0: unwraps
	}{
		{"as wrapped", string(ct), 0},
		{"other JSON layout", reencode(func(map[string]string) {}), 0},
		{"trailing garbage", base64.StdEncoding.EncodeToString(append(append([]byte{}, rawCT...), "x"...)), 422},
		{"no handle", reencode(func(m map[string]string) { delete(m, "handle") }), 422},
		{"unknown handle", reencode(func(m map[string]string) { m["handle"] = "00000000-0000-4000-8000-000000000000" }), 422},
		{"other format version", reencode(func(m map[string]string) { m["version"] = "3.0.0" }), 422},
		{"short iv", reencode(func(m map[string]string) { m["iv"] = "AAAA" }), 422},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Unwrap(t.Context(), env.RootKeyID, []byte(tc.ct), nil)
			if tc.status == 0 {
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("Unwrap: %v", err)
				}
				return
			}
			if status, code := kpStatus(t, err); status != tc.status || code != mockkp.CodeUnprocessableCipher {
				t.Fatalf("got %d %s, want %d", status, code, tc.status)
			}
		})
	}
}
