package controller

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/keysync-dev/keysync/internal/kpkey"
)

// Permanent reports whether an unwrap error is a definite answer about the key itself, the
// only kind of answer that may remove a synced key file:
//   - Key Protect answered with its own JSON error envelope (a reason code, not a gateway's
//     page) and status 400 (malformed request or ciphertext), 403 (access to the instance or
//     key denied), 404 (no such key or instance), 409 (the key's state forbids unwrapping),
//     410 (the key is destroyed) or 422 (the ciphertext is not the key's);
//   - the unwrap succeeded but the plaintext is not base64 (kpkey.ErrPlaintextNotBase64).
//
// Everything else is transient and retried with backoff while the file stays: any IAM
// answer (HTML or JSON, a refused API key included: a credential problem says nothing about
// the key), 401, 429, 5xx, HTML pages, timeouts, connection failures, unknown errors.
func Permanent(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, kpkey.ErrPlaintextNotBase64) {
		return true
	}
	var kerr *kp.Error
	if !errors.As(err, &kerr) {
		return false
	}
	switch kerr.StatusCode {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusConflict,
		http.StatusGone, http.StatusUnprocessableEntity:
		return kpReason(kerr) != ""
	}
	return false
}

// Transient reports whether an unwrap error is worth retrying: every error that is not
// Permanent.
func Transient(err error) bool { return err != nil && !Permanent(err) }

// kpReason is the first reason code of Key Protect's JSON error envelope in the answer, ""
// when the answer was something else (an HTML page of a gateway, an empty body).
func kpReason(e *kp.Error) string {
	var env struct {
		Resources []struct {
			Reasons []struct {
				Code string `json:"code"`
			} `json:"reasons"`
		} `json:"resources"`
	}
	if json.Unmarshal(e.BodyContent, &env) != nil {
		return ""
	}
	for _, r := range env.Resources {
		for _, reason := range r.Reasons {
			if reason.Code != "" {
				return reason.Code
			}
		}
	}
	return ""
}

// RetryAfter is the Retry-After that IAM or Key Protect sent with the failure err reports (0
// when none); the retry policy never retries sooner.
func RetryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return 0
}

// describe says what failed in one line for Events and logs: status and reason code, never a
// body (an HTML page, or anything that might echo a request).
func describe(err error) string {
	var kerr *kp.Error
	if errors.As(err, &kerr) {
		s := fmt.Sprintf("Key Protect answered HTTP %d", kerr.StatusCode)
		if code := kpReason(kerr); code != "" {
			s += " " + code
		} else {
			s += " without its error envelope (a gateway's answer?)"
		}
		if d := RetryAfter(err); d > 0 {
			s += fmt.Sprintf(", Retry-After %s", d)
		}
		return s
	}
	var terr *kpkey.TokenError
	if errors.As(err, &terr) {
		return terr.Error()
	}
	return err.Error()
}
