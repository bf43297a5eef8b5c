// Package mockkp is a mock of IBM Key Protect (API v2) and of the IBM Cloud IAM token service,
// accurate enough that the official github.com/IBM/keyprotect-go-client talks to it unchanged.
//
// One handler (Server.Handler) serves:
//   - IAM: POST /identity/token and POST /oidc/token (grant_type
//     urn:ibm:params:oauth:grant-type:apikey). Tokens are HMAC-signed, expire after
//     Options.TokenTTL (default 1h) by Options.Now, and name the API key's subject, never the key.
//   - Key Protect: /api/v2/keys (create, list), /api/v2/keys/{idOrAlias} (get, delete,
//     ?action=X), .../metadata, .../versions, .../restore, .../actions/{wrap,unwrap,rewrap,
//     rotate,disable,enable}. Every call needs "authorization: Bearer <token>" (401 otherwise)
//     and a "bluemix-instance" the token's API key may use (403 otherwise).
//   - GET /healthz.
//
// Cryptography is real: every key version holds 32 random (or imported) bytes and wrap is
// AES-256-GCM over the plaintext with the key id, the version id and the request's AAD as
// additional data. The ciphertext has the service's shape: base64 of the JSON
// {"ciphertext","iv","version":"4.0.0","handle":"<key version id>"}. A tampered ciphertext,
// a wrong AAD or another key's ciphertext yields 422 UNPROCESSABLE_CIPHERTEXT_ERR. The first
// version of a key has the key's own id; rotate adds a version, wrap always uses the newest,
// unwrap of an older version also returns the ciphertext rewrapped under the newest.
//
// State lives in memory; with Options.StatePath every change is written atomically (temp file,
// fsync, rename) with mode 0600, and New loads it, so a restarted server still unwraps what it
// wrapped and still accepts the tokens it issued. Options.Seed (the --seed file of cmd/mockkp)
// pre-creates instances, API keys and root keys with fixed ids; seeded entries already in the
// state are left as they are.
//
// Server.AdminHandler (serve it on its own listener) injects faults (latency, an HTTP status
// with an optional Retry-After, an HTML error page with a status and optional Retry-After, a
// dropped connection) into the next N requests of an operation or into all of them for a
// while, sets rate limits, and reads per-operation request counters. See AdminHandler for its
// routes.
//
// Options.RateLimits (--rate-limit, POST /ratelimits) limit an operation per Key Protect
// instance with a token bucket, as the service does: beyond it the answer is 429 with
// Retry-After and the service's error body, counted in RateLimitedCounter(op).
//
// Logs (log/slog) name the operation, path, status and duration, never bodies, plaintexts,
// ciphertexts, API keys or tokens.
package mockkp
