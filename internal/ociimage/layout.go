package ociimage

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/keysync-dev/keysync/internal/atomicfile"
)

// WriteLayout writes images (tag → image) as one OCI image layout in dir: the blobs, then
// oci-layout and index.json naming each tag (org.opencontainers.image.ref.name), in the order
// of tags. Blobs already in dir are kept; every file is written atomically.
func WriteLayout(dir string, tags []string, images map[string]Image) error {
	blobDir := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return fmt.Errorf("failed to create OCI layout: %w", err)
	}
	put := func(data []byte) (digest.Digest, error) {
		d := digest.FromBytes(data)
		path := filepath.Join(blobDir, d.Encoded())
		if _, err := os.Stat(path); err == nil {
			return d, nil
		}
		if err := atomicfile.Write(path, data, 0o644); err != nil {
			return "", fmt.Errorf("failed to write blob %s: %w", d, err)
		}
		return d, nil
	}
	index := imgspec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageIndex}
	for _, tag := range tags {
		img, ok := images[tag]
		if !ok {
			return fmt.Errorf("no image for tag %q in the OCI layout", tag)
		}
		for _, l := range img.Layers {
			if _, err := put(l.Blob()); err != nil {
				return err
			}
		}
		cfg, _, err := img.Config()
		if err != nil {
			return err
		}
		if _, err := put(cfg); err != nil {
			return err
		}
		man, _, err := img.Manifest()
		if err != nil {
			return err
		}
		md, err := put(man)
		if err != nil {
			return err
		}
		index.Manifests = append(index.Manifests, imgspec.Descriptor{
			MediaType:   imgspec.MediaTypeImageManifest,
			Digest:      md,
			Size:        int64(len(man)),
			Annotations: map[string]string{imgspec.AnnotationRefName: tag},
			Platform:    &imgspec.Platform{Architecture: platform.Architecture, OS: platform.OS},
		})
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("failed to encode OCI index: %w", err)
	}
	layoutJSON, err := json.Marshal(imgspec.ImageLayout{Version: imgspec.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("failed to encode oci-layout: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, imgspec.ImageLayoutFile), layoutJSON, 0o644); err != nil {
		return fmt.Errorf("failed to write oci-layout: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, imgspec.ImageIndexFile), indexJSON, 0o644); err != nil {
		return fmt.Errorf("failed to write OCI index: %w", err)
	}
	return nil
}
