package kmsplugin

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"k8s.io/kms/pkg/service"

	"github.com/keysync-dev/keysync/internal/kpkey"
)

// Version is the KMS API version the plug-in speaks (StatusResponse.version).
const Version = "v2"

// Key Protect key states (the API's numbers).
const keyStateActive = 1

// Service implements k8s.io/kms's service.Service over Key Protect: Encrypt wraps the DEK (seed)
// that kube-apiserver sends with the root key (CRK), Decrypt unwraps it, Status reports the
// CRK's current version as key_id ("<crk id>:<version id>"), so a rotation in Key Protect
// makes kube-apiserver move to a new DEK. It keeps no key material: the plaintexts pass
// through. IAM tokens come from kpkey.TokenSource (cached until a minute before expiry).
type Service struct {
	client     *kp.Client
	tokens     *kpkey.TokenSource
	crk        string
	maxRetries int
	interval   time.Duration
	log        *slog.Logger
	now        func() time.Time

	mu      sync.Mutex
	checked time.Time
	last    keyState
}

var _ service.Service = (*Service)(nil)

// keyState is one look at the root key.
type keyState struct {
	keyID string // "<crk>:<version>" ("" when err)
	state int
	err   error
}

// ServiceOptions configure NewService.
type ServiceOptions struct {
	// KP is the Key Protect endpoint and credentials (valid: kpkey.Config.Validate).
	KP kpkey.Config
	// CRKID is the root key.
	CRKID string
	// KPTransport and TokenTransport carry Key Protect's and IAM's requests (nil:
	// kp.DefaultTransport()).
	KPTransport, TokenTransport http.RoundTripper
	// MaxRetries is how often one Key Protect call is retried (connection errors, 429, 5xx).
	MaxRetries int
	// KeyCheckInterval is how long Status and Ready reuse a look at the root key.
	KeyCheckInterval time.Duration
	// Logger receives debug lines per call (key ids, uids, durations; never values).
	Logger *slog.Logger
}

// NewService builds the Key Protect client (kpkey.NewClient) and the service.
func NewService(o ServiceOptions) (*Service, error) {
	if o.CRKID == "" {
		return nil, errors.New("failed to create the KMS service: no root key id")
	}
	if o.KPTransport == nil {
		o.KPTransport = kp.DefaultTransport()
	}
	if o.TokenTransport == nil {
		o.TokenTransport = kp.DefaultTransport()
	}
	client, err := kpkey.NewClient(o.KP, attemptLimiter{next: o.KPTransport})
	if err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{
		client: client, crk: o.CRKID, maxRetries: o.MaxRetries, interval: o.KeyCheckInterval, log: o.Logger, now: time.Now,
		tokens: &kpkey.TokenSource{URL: o.KP.TokenEndpoint(), APIKey: o.KP.APIKey, Client: &http.Client{Transport: o.TokenTransport, Timeout: 30 * time.Second}},
	}, nil
}

// KeyID is the key_id of a root key version.
func KeyID(crk, version string) string { return crk + ":" + version }

// parseKeyID splits a key_id into the root key and its version.
func parseKeyID(keyID string) (crk, version string, err error) {
	crk, version, ok := strings.Cut(keyID, ":")
	if !ok || crk == "" || version == "" {
		return "", "", fmt.Errorf("key_id %q is not <root key id>:<version id>", keyID)
	}
	return crk, version, nil
}

// Encrypt wraps data (the DEK seed) with the root key's current version.
func (s *Service) Encrypt(ctx context.Context, uid string, data []byte) (*service.EncryptResponse, error) {
	start := s.now()
	var res *kp.KeyActionResponse
	err := s.call(ctx, "wrap", func(ctx context.Context) error {
		var err error
		res, err = s.client.WrapV2(ctx, s.crk, []byte(base64.StdEncoding.EncodeToString(data)), nil)
		return err
	})
	if err == nil && (res == nil || res.CipherText == "" || res.KeyVersion == nil || res.KeyVersion.ID == "") {
		err = errors.New("Key Protect's wrap answer lacks the ciphertext or the key version")
	}
	if err != nil {
		s.log.Warn("encrypt failed", "uid", uid, "crk", s.crk, "err", err)
		return nil, fmt.Errorf("failed to wrap the DEK with root key %s: %w", s.crk, err)
	}
	keyID := KeyID(s.crk, res.KeyVersion.ID)
	s.log.Debug("encrypt", "uid", uid, "key_id", keyID, "duration", s.now().Sub(start))
	return &service.EncryptResponse{Ciphertext: []byte(res.CipherText), KeyID: keyID}, nil
}

// Decrypt unwraps a DEK with the root key its key_id names (which may be an earlier CRK_ID:
// Key Protect unwraps with whichever version wrapped it).
func (s *Service) Decrypt(ctx context.Context, uid string, req *service.DecryptRequest) ([]byte, error) {
	start := s.now()
	crk, _, err := parseKeyID(req.KeyID)
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap the DEK: %w", err)
	}
	var plain []byte
	err = s.call(ctx, "unwrap", func(ctx context.Context) error {
		var err error
		plain, _, err = s.client.UnwrapV2(ctx, crk, req.Ciphertext, nil)
		return err
	})
	if err != nil {
		s.log.Warn("decrypt failed", "uid", uid, "key_id", req.KeyID, "err", err)
		return nil, fmt.Errorf("failed to unwrap the DEK with root key %s: %w", crk, err)
	}
	dek, err := base64.StdEncoding.DecodeString(string(plain))
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap the DEK with root key %s: the plaintext is not base64 (not wrapped by this plug-in)", crk)
	}
	s.log.Debug("decrypt", "uid", uid, "key_id", req.KeyID, "duration", s.now().Sub(start))
	return dek, nil
}

// Status reports the root key's current version as key_id; an error when Key Protect cannot
// be reached or the key cannot wrap (kube-apiserver then keeps its DEKs for reads and reports
// the plug-in unhealthy).
func (s *Service) Status(ctx context.Context) (*service.StatusResponse, error) {
	st := s.keyState(ctx)
	if err := st.usable(s.crk); err != nil {
		return nil, err
	}
	return &service.StatusResponse{Version: Version, Healthz: "ok", KeyID: st.keyID}, nil
}

// Ready reports whether Key Protect answers and the root key can wrap (readiness).
func (s *Service) Ready(ctx context.Context) error { return s.keyState(ctx).usable(s.crk) }

func (st keyState) usable(crk string) error {
	if st.err != nil {
		return fmt.Errorf("failed to read root key %s: %w", crk, st.err)
	}
	if st.state != keyStateActive {
		return fmt.Errorf("root key %s is not active (Key Protect state %d)", crk, st.state)
	}
	return nil
}

// keyState reads the root key's metadata, reusing a look younger than the check interval.
func (s *Service) keyState(ctx context.Context) keyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.checked.IsZero() && s.now().Sub(s.checked) < s.interval {
		return s.last
	}
	var key *kp.Key
	err := s.call(ctx, "metadata", func(ctx context.Context) error {
		var err error
		key, err = s.client.GetKeyMetadata(ctx, s.crk)
		return err
	})
	st := keyState{err: err}
	if err == nil {
		if key.KeyVersion == nil || key.KeyVersion.ID == "" {
			st.err = errors.New("Key Protect's metadata names no current version")
		} else {
			st.keyID, st.state = KeyID(s.crk, key.KeyVersion.ID), key.State
		}
	}
	if st.keyID != s.last.keyID && st.keyID != "" {
		s.log.Info("root key version", "key_id", st.keyID, "previous", s.last.keyID)
	}
	if (st.err == nil) != (s.last.err == nil) || s.checked.IsZero() {
		if st.err != nil {
			s.log.Warn("Key Protect unusable", "crk", s.crk, "err", st.err)
		} else {
			s.log.Info("Key Protect usable", "key_id", st.keyID)
		}
	}
	s.last, s.checked = st, s.now()
	return st
}

// call runs one Key Protect operation with an IAM token and at most 1+maxRetries attempts.
func (s *Service) call(ctx context.Context, op string, do func(context.Context) error) error {
	tok, err := s.tokens.Token(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	att := &attempts{max: 1 + s.maxRetries, cancel: cancel}
	ctx = context.WithValue(kp.NewContextWithAuth(ctx, "Bearer "+tok), attemptsKey{}, att)
	err = do(ctx)
	if n, last, exhausted := att.result(); exhausted {
		return fmt.Errorf("Key Protect %s failed %d times (MAX_RETRIES %d), last: %s", op, n, s.maxRetries, last)
	}
	return err
}
