package lab

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// ImageFile is one file of a single-layer image built FROM scratch.
type ImageFile struct {
	// Name is the path inside the image, without a leading slash ("catatonit").
	Name string
	// Source is the host file copied in.
	Source string
	// Mode is the file mode in the image.
	Mode int64
}

// ScratchImage describes a single-layer image FROM scratch: a static binary and its
// entrypoint, like the labs' pause image (Debian's catatonit with -P).
type ScratchImage struct {
	Files      []ImageFile
	Entrypoint []string
	Cmd        []string
	// Labels go into the image config.
	Labels map[string]string
}

const (
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

type blob struct {
	mediaType string
	data      []byte
}

func (b blob) digest() string {
	sum := sha256.Sum256(b.data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// build renders the layer, config and manifest. The result is reproducible: fixed mtimes,
// no gzip header time, sorted input as given.
func (img ScratchImage) build() (manifest blob, blobs []blob, err error) {
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	for _, f := range img.Files {
		data, err := os.ReadFile(f.Source)
		if err != nil {
			return blob{}, nil, fmt.Errorf("failed to read image file %s: %w", f.Source, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+f.Name), "/")
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: f.Mode, Size: int64(len(data)),
			Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}); err != nil {
			return blob{}, nil, fmt.Errorf("failed to write tar header for %s: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return blob{}, nil, fmt.Errorf("failed to write %s into the layer: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return blob{}, nil, fmt.Errorf("failed to finish the layer tar: %w", err)
	}
	diffID := blob{data: tarBuf.Bytes()}.digest()
	var gzBuf bytes.Buffer
	gz := gzip.NewWriter(&gzBuf)
	if _, err := gz.Write(tarBuf.Bytes()); err != nil {
		return blob{}, nil, fmt.Errorf("failed to compress the layer: %w", err)
	}
	if err := gz.Close(); err != nil {
		return blob{}, nil, fmt.Errorf("failed to compress the layer: %w", err)
	}
	layer := blob{mediaType: mediaTypeLayer, data: gzBuf.Bytes()}

	cfg := map[string]any{
		"created":      "1970-01-01T00:00:00Z",
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": img.Entrypoint, "Cmd": img.Cmd, "Labels": img.Labels},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	}
	cfgData, err := json.Marshal(cfg)
	if err != nil {
		return blob{}, nil, fmt.Errorf("failed to encode the image config: %w", err)
	}
	config := blob{mediaType: mediaTypeConfig, data: cfgData}
	desc := func(b blob) map[string]any {
		return map[string]any{"mediaType": b.mediaType, "digest": b.digest(), "size": len(b.data)}
	}
	man, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeManifest,
		"config":        desc(config),
		"layers":        []any{desc(layer)},
	})
	if err != nil {
		return blob{}, nil, fmt.Errorf("failed to encode the manifest: %w", err)
	}
	return blob{mediaType: mediaTypeManifest, data: man}, []blob{config, layer}, nil
}

// PushScratchImage builds img and pushes it over plain HTTP to the registry at host:port as
// repo:tag (the labs' loopback registries), returning the manifest digest. Blobs the registry
// already has are not uploaded again.
func PushScratchImage(ctx context.Context, client *http.Client, registry, repo, tag string, img ScratchImage) (string, error) {
	manifest, blobs, err := img.build()
	if err != nil {
		return "", err
	}
	base := "http://" + registry + "/v2/" + repo
	for _, b := range blobs {
		if err := pushBlob(ctx, client, base, b); err != nil {
			return "", err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/manifests/"+tag, bytes.NewReader(manifest.data))
	if err != nil {
		return "", fmt.Errorf("failed to build manifest request: %w", err)
	}
	req.Header.Set("Content-Type", mediaTypeManifest)
	if err := do(client, req, http.StatusCreated); err != nil {
		return "", fmt.Errorf("failed to push manifest %s/%s:%s: %w", registry, repo, tag, err)
	}
	return manifest.digest(), nil
}

func pushBlob(ctx context.Context, client *http.Client, base string, b blob) error {
	head, err := http.NewRequestWithContext(ctx, http.MethodHead, base+"/blobs/"+b.digest(), nil)
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
	q.Set("digest", b.digest())
	loc.RawQuery = q.Encode()
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(b.data))
	if err != nil {
		return fmt.Errorf("failed to build blob upload: %w", err)
	}
	put.Header.Set("Content-Type", "application/octet-stream")
	if err := do(client, put, http.StatusCreated); err != nil {
		return fmt.Errorf("failed to upload blob %s: %w", b.digest(), err)
	}
	return nil
}

func do(client *http.Client, req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
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
