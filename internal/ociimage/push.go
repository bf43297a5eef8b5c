package ociimage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Push pushes img over plain HTTP to the registry at host:port as repo:tag with the registry
// v2 API (the labs' loopback registries) and returns the manifest digest. Blobs the registry
// already has are not uploaded again.
func (img Image) Push(ctx context.Context, client *http.Client, registry, repo, tag string) (digest.Digest, error) {
	cfg, cfgDigest, err := img.Config()
	if err != nil {
		return "", err
	}
	man, manDigest, err := img.Manifest()
	if err != nil {
		return "", err
	}
	base := "http://" + registry + "/v2/" + repo
	if err := pushBlob(ctx, client, base, cfgDigest, cfg); err != nil {
		return "", err
	}
	for _, l := range img.Layers {
		if err := pushBlob(ctx, client, base, l.Digest(), l.Blob()); err != nil {
			return "", err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/manifests/"+tag, bytes.NewReader(man))
	if err != nil {
		return "", fmt.Errorf("failed to build manifest request: %w", err)
	}
	req.Header.Set("Content-Type", imgspec.MediaTypeImageManifest)
	if err := do(client, req, http.StatusCreated); err != nil {
		return "", fmt.Errorf("failed to push manifest %s/%s:%s: %w", registry, repo, tag, err)
	}
	return manDigest, nil
}

// pushBlob uploads one blob monolithically (POST, then PUT with its digest) unless HEAD finds it.
func pushBlob(ctx context.Context, client *http.Client, base string, d digest.Digest, data []byte) error {
	head, err := http.NewRequestWithContext(ctx, http.MethodHead, base+"/blobs/"+d.String(), nil)
	if err != nil {
		return fmt.Errorf("failed to build blob request: %w", err)
	}
	if do(client, head, http.StatusOK) == nil {
		return nil
	}
	start, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/blobs/uploads/", nil)
	if err != nil {
		return fmt.Errorf("failed to build upload request: %w", err)
	}
	resp, err := client.Do(start)
	if err != nil {
		return fmt.Errorf("failed to start blob upload: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("failed to start blob upload: status %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("failed to read upload location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("failed to build blob upload: %w", err)
	}
	put.Header.Set("Content-Type", "application/octet-stream")
	if err := do(client, put, http.StatusCreated); err != nil {
		return fmt.Errorf("failed to upload blob %s: %w", d, err)
	}
	return nil
}

func do(client *http.Client, req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message holds the whole URL
		}
		return fmt.Errorf("%s %s: %w", req.Method, redact(req.URL), err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %s: %s", req.Method, redact(req.URL), resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// redact drops the query (upload state tokens) from URLs in errors.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}
