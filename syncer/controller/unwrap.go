package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	kp "github.com/IBM/keyprotect-go-client"
	"github.com/IBM/keyprotect-go-client/iam"
	"github.com/keysync-dev/keysync/internal/kpkey"
)

// Unwrapper unwraps a kp-key ciphertext into the PEM it wraps.
type Unwrapper interface {
	Unwrap(ctx context.Context, rootKeyID, ciphertext string) ([]byte, error)
}

// UnwrapperFactory builds an Unwrapper from a valid keyprotect-config.
type UnwrapperFactory func(kpkey.Config) (Unwrapper, error)

// KeyProtect is the default factory: the official Key Protect client (kpkey.NewClient) with
// kpkey.Unwrap's convention (the plaintext is base64 of the PEM).
func KeyProtect(transport http.RoundTripper) UnwrapperFactory {
	return func(c kpkey.Config) (Unwrapper, error) {
		client, err := kpkey.NewClient(c, transport)
		if err != nil {
			return nil, err
		}
		return kpUnwrapper{client}, nil
	}
}

type kpUnwrapper struct{ c *kp.Client }

// Unwrap runs the official client's unwrap. The client fetches IAM tokens without the
// context, so the call runs in its own goroutine and Unwrap returns when ctx ends.
func (u kpUnwrapper) Unwrap(ctx context.Context, rootKeyID, ciphertext string) ([]byte, error) {
	type result struct {
		pem []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		pem, err := kpkey.Unwrap(ctx, u.c, rootKeyID, ciphertext)
		ch <- result{pem, err}
	}()
	select {
	case r := <-ch:
		return r.pem, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("failed to unwrap with root key %s: %w", rootKeyID, ctx.Err())
	}
}

// Transient reports whether an unwrap error is worth retrying: Key Protect or IAM answering
// 429 or 5xx, a timeout, or a connection failure. Any other 4xx (unknown root key, wrong
// instance, bad ciphertext, bad API key) is permanent until the Secret or the config changes.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var kerr *kp.Error
	if errors.As(err, &kerr) {
		return retryableStatus(kerr.StatusCode)
	}
	var ierr iam.Error
	if errors.As(err, &ierr) {
		return ierr.HTTPResponse == nil || retryableStatus(ierr.HTTPResponse.StatusCode)
	}
	var uerr *kp.URLError
	if errors.As(err, &uerr) {
		return true // transport failure after the client's own retries
	}
	var nerr net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &nerr)
}

func retryableStatus(code int) bool {
	return code == http.StatusTooManyRequests || code >= 500
}
