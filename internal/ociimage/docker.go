package ociimage

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// DockerTag is repo:<the first 12 hex digits of the config digest>. The config names every
// layer's diff ID, so the tag changes with any content, mode, path or config change, and it is
// the short image ID `docker images` shows.
func (img Image) DockerTag(repo string) (string, error) {
	if repo == "" {
		return "", fmt.Errorf("image has no repository name")
	}
	_, d, err := img.Config()
	if err != nil {
		return "", err
	}
	return repo + ":" + d.Encoded()[:12], nil
}

// EnsureDocker loads img into the local Docker daemon as DockerTag(repo) unless an image with
// that tag and img's ID is there already; it returns the tag and whether it was reused.
func (img Image) EnsureDocker(ctx context.Context, repo string) (tag string, reused bool, err error) {
	tag, err = img.DockerTag(repo)
	if err != nil {
		return "", false, err
	}
	_, id, err := img.Config()
	if err != nil {
		return "", false, err
	}
	if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", tag).Output(); err == nil &&
		strings.TrimSpace(string(out)) == id.String() {
		return tag, true, nil
	}
	if err := img.LoadDocker(ctx, tag); err != nil {
		return "", false, err
	}
	return tag, false, nil
}

// LoadDocker pipes img as a docker-archive tarball (manifest.json, the config, uncompressed
// layer tars) to `docker load`, tagged tag. Nothing is built or pulled.
func (img Image) LoadDocker(ctx context.Context, tag string) error {
	cmd := exec.CommandContext(ctx, "docker", "load", "--quiet")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("failed to load image %s: %w", tag, err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to run docker load for %s: %w", tag, err)
	}
	werr := img.writeDockerArchive(stdin, tag)
	if err := stdin.Close(); werr == nil && err != nil {
		werr = err
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("failed to load image %s: docker load: %w: %s", tag, err, strings.TrimSpace(stderr.String()))
	}
	if werr != nil {
		return fmt.Errorf("failed to load image %s: %w", tag, werr)
	}
	return nil
}

// dockerManifest is one entry of a docker-archive's manifest.json.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// writeDockerArchive writes the `docker save` format: <config hex>.json, <diff ID hex>/layer.tar
// and manifest.json. Layers go uncompressed: docker load takes their diff IDs from the tars.
func (img Image) writeDockerArchive(w io.Writer, tag string) error {
	cfg, cfgDigest, err := img.Config()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch,
			Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return fmt.Errorf("failed to write %s into the docker archive: %w", name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return fmt.Errorf("failed to write %s into the docker archive: %w", name, err)
		}
		return nil
	}
	m := dockerManifest{Config: cfgDigest.Encoded() + ".json", RepoTags: []string{tag}, Layers: []string{}}
	if err := put(m.Config, cfg); err != nil {
		return err
	}
	written := map[string]bool{}
	for _, l := range img.Layers {
		name := l.DiffID().Encoded() + "/layer.tar"
		m.Layers = append(m.Layers, name)
		if written[name] {
			continue
		}
		written[name] = true
		if err := put(name, l.tar); err != nil {
			return err
		}
	}
	data, err := json.Marshal([]dockerManifest{m})
	if err != nil {
		return fmt.Errorf("failed to encode the docker archive manifest: %w", err)
	}
	if err := put("manifest.json", data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("failed to finish the docker archive: %w", err)
	}
	return nil
}
