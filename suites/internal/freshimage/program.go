package freshimage

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"

	"github.com/keysync-dev/keysync/internal/names"
)

// errNoProgram means no layer holds the marker program.
var errNoProgram = errors.New("no layer holds the marker program")

// readProgram returns the marker program of the plain image ref, read from its layers (top
// layer first, as a container would see it).
func readProgram(ctx context.Context, ref string, sys *types.SystemContext) ([]byte, error) {
	r, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	src, err := r.NewImageSource(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("failed to open %s: %w", ref, err)
	}
	defer src.Close()
	raw, _, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to read the manifest of %s: %w", ref, err)
	}
	// OCI and Docker schema 2 manifests name their layers alike.
	var m struct {
		Layers []struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Size      int64         `json:"size"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("failed to parse the manifest of %s: %w", ref, err)
	}
	for i := len(m.Layers) - 1; i >= 0; i-- {
		l := m.Layers[i]
		if strings.HasSuffix(l.MediaType, "+encrypted") {
			return nil, fmt.Errorf("failed to take the marker program from %s: layer %d is encrypted (want a plain fixture)", ref, i)
		}
		rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: l.Digest, Size: l.Size}, none.NoCache)
		if err != nil {
			return nil, fmt.Errorf("failed to read layer %s of %s: %w", l.Digest, ref, err)
		}
		program, err := findFile(rc, strings.Contains(l.MediaType, "gzip"), names.FixtureMarkerProgram)
		rc.Close()
		switch {
		case err == nil:
			return program, nil
		case !errors.Is(err, errNoProgram):
			return nil, fmt.Errorf("failed to read layer %s of %s: %w", l.Digest, ref, err)
		}
	}
	return nil, fmt.Errorf("failed to take the marker program from %s: %w", ref, errNoProgram)
}

// findFile returns the regular file at want in the layer tar r (gzip-compressed when gz).
func findFile(r io.Reader, gz bool, want string) ([]byte, error) {
	if gz {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("failed to decompress layer: %w", err)
		}
		defer zr.Close()
		r = zr
	}
	want = strings.TrimPrefix(path.Clean("/"+want), "/")
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errNoProgram
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read layer tar: %w", err)
		}
		if strings.TrimPrefix(path.Clean("/"+hdr.Name), "/") != want || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if hdr.Size > maxProgram {
			return nil, fmt.Errorf("%s is %d bytes, more than %d", want, hdr.Size, maxProgram)
		}
		data, err := io.ReadAll(io.LimitReader(tr, maxProgram))
		if err != nil {
			return nil, fmt.Errorf("failed to read %s from layer: %w", want, err)
		}
		return data, nil
	}
}
