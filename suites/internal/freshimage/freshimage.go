// Package freshimage makes an encrypted fixture image that no node can hold yet, for the pod
// feature: the marker program of a plain fixture already in the registry, a new marker line,
// both layers encrypted with JWE for a new RSA key, pushed under a new reference.
//
// It encrypts with ocicrypt and talks to the registry through containers/image's docker
// transport, never through containers/image/copy: copy links the signature package, which
// links gpgme through cgo unless the build sets containers_image_openpgp, and the suites must
// build with no build tag (`go test ./suites`).
package freshimage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/containers/ocicrypt"
	encconfig "github.com/containers/ocicrypt/config"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/internal/ociimage"
)

// Options say where the plain fixture is and where the new image goes.
type Options struct {
	// Registry is host:port of the registry the nodes pull from.
	Registry string
	// Repo is the repository under Registry ("keysync-suites/fresh").
	Repo string
	// Tag names this image (a run ID, so the reference is new).
	Tag string
	// PlainRef is a plain fixture image (host:port/repo:tag) whose marker program is reused.
	PlainRef string
	// Marker is the new image's marker line; it must start with names.FixtureMarkerPrefix.
	Marker string
	// Insecure skips TLS verification and allows plain HTTP (the labs' registries).
	Insecure bool
	// AuthFile is a containers-auth.json with the registry's credentials (the lab env file's
	// REGISTRY_AUTH_FILE), read for the plain image and the push; empty: none.
	AuthFile string
	// CertDir holds the registry's CA (ca.crt); empty: the system's roots.
	CertDir string
}

// Image is the pushed image and the one private key that decrypts it.
type Image struct {
	Ref    string
	Marker string
	// Key is the RSA private key, PKCS#8 PEM.
	Key []byte
}

// maxProgram bounds the marker program read from the plain image.
const maxProgram = 64 << 20

// Push makes and pushes the image.
func Push(ctx context.Context, o Options) (Image, error) {
	switch {
	case o.Registry == "" || strings.Contains(o.Registry, "/"):
		return Image{}, fmt.Errorf("failed to push a fresh fixture: registry must be host:port, got %q", o.Registry)
	case o.Repo == "" || o.Tag == "" || o.PlainRef == "":
		return Image{}, errors.New("failed to push a fresh fixture: repository, tag and plain image are required")
	case !strings.HasPrefix(o.Marker, names.FixtureMarkerPrefix) || strings.ContainsAny(o.Marker, "\n\r"):
		return Image{}, fmt.Errorf("failed to push a fresh fixture: marker %q is not one line starting with %q", o.Marker, names.FixtureMarkerPrefix)
	}
	sys := &types.SystemContext{DockerInsecureSkipTLSVerify: types.NewOptionalBool(o.Insecure), DockerRegistryUserAgent: "keysync-suites",
		AuthFilePath: o.AuthFile, DockerCertPath: o.CertDir}
	program, err := readProgram(ctx, o.PlainRef, sys)
	if err != nil {
		return Image{}, err
	}
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return Image{}, fmt.Errorf("failed to generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Image{}, fmt.Errorf("failed to marshal key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return Image{}, fmt.Errorf("failed to marshal public key: %w", err)
	}
	img, err := build(program, o.Marker, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	if err != nil {
		return Image{}, err
	}
	ref := o.Registry + "/" + o.Repo + ":" + o.Tag
	if err := img.push(ctx, ref, sys); err != nil {
		return Image{}, err
	}
	return Image{Ref: ref, Marker: o.Marker, Key: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}, nil
}

// blob is one blob to push.
type blob struct {
	desc imgspec.Descriptor
	data []byte
}

// encrypted is an image ready to push: its config, its encrypted layers and its manifest.
type encrypted struct {
	config   blob
	layers   []blob
	manifest []byte
	// plain are the layers before encryption (for tests).
	plain []*ociimage.Layer
}

// build makes the image (program and marker layers, as the fixtures' images are made) and
// encrypts every layer for the public key pub (PEM), as containers/image's copy would.
func build(program []byte, marker string, pub []byte) (*encrypted, error) {
	prog, err := ociimage.NewLayer(ociimage.File(names.FixtureMarkerProgram, 0o755, program))
	if err != nil {
		return nil, err
	}
	data, err := ociimage.NewLayer(ociimage.File(names.FixtureMarkerData, 0o644, []byte(marker+"\n")))
	if err != nil {
		return nil, err
	}
	img := ociimage.Image{Layers: []*ociimage.Layer{prog, data}, Entrypoint: []string{names.FixtureMarkerProgram}, CreatedBy: "keysync suites"}
	cfg, cfgDigest, err := img.Config()
	if err != nil {
		return nil, err
	}
	cc, err := encconfig.EncryptWithJwe([][]byte{pub})
	if err != nil {
		return nil, fmt.Errorf("failed to configure JWE encryption: %w", err)
	}
	out := &encrypted{config: blob{desc: imgspec.Descriptor{MediaType: imgspec.MediaTypeImageConfig, Digest: cfgDigest, Size: int64(len(cfg))}, data: cfg},
		plain: img.Layers}
	for i, l := range img.Layers {
		desc := imgspec.Descriptor{MediaType: imgspec.MediaTypeImageLayerGzip, Digest: l.Digest(), Size: int64(len(l.Blob()))}
		r, finalize, err := ocicrypt.EncryptLayer(cc.EncryptConfig, bytes.NewReader(l.Blob()), desc)
		if err != nil {
			return nil, fmt.Errorf("failed to encrypt layer %d: %w", i, err)
		}
		enc, err := io.ReadAll(r)
		if err != nil {
			return nil, fmt.Errorf("failed to encrypt layer %d: %w", i, err)
		}
		annotations, err := finalize()
		if err != nil {
			return nil, fmt.Errorf("failed to finish encrypting layer %d: %w", i, err)
		}
		out.layers = append(out.layers, blob{data: enc, desc: imgspec.Descriptor{MediaType: imgspec.MediaTypeImageLayerGzip + "+encrypted",
			Digest: digest.FromBytes(enc), Size: int64(len(enc)), Annotations: annotations}})
	}
	m := imgspec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: imgspec.MediaTypeImageManifest, Config: out.config.desc}
	for _, l := range out.layers {
		m.Layers = append(m.Layers, l.desc)
	}
	if out.manifest, err = json.Marshal(m); err != nil {
		return nil, fmt.Errorf("failed to encode image manifest: %w", err)
	}
	return out, nil
}

// push uploads the blobs, then the manifest, to ref (host:port/repo:tag).
func (e *encrypted) push(ctx context.Context, ref string, sys *types.SystemContext) error {
	r, err := parseRef(ref)
	if err != nil {
		return err
	}
	dest, err := r.NewImageDestination(ctx, sys)
	if err != nil {
		return fmt.Errorf("failed to open %s for pushing: %w", ref, err)
	}
	defer dest.Close()
	for i, b := range append([]blob{e.config}, e.layers...) {
		if _, err := dest.PutBlob(ctx, bytes.NewReader(b.data), types.BlobInfo{Digest: b.desc.Digest, Size: b.desc.Size}, none.NoCache, i == 0); err != nil {
			return fmt.Errorf("failed to push blob %s to %s: %w", b.desc.Digest, ref, err)
		}
	}
	if err := dest.PutManifest(ctx, e.manifest, nil); err != nil {
		return fmt.Errorf("failed to push the manifest of %s: %w", ref, err)
	}
	if err := dest.Commit(ctx, nil); err != nil {
		return fmt.Errorf("failed to push %s: %w", ref, err)
	}
	return nil
}

func parseRef(ref string) (types.ImageReference, error) {
	r, err := docker.ParseReference("//" + strings.TrimPrefix(ref, "docker://"))
	if err != nil {
		return nil, fmt.Errorf("failed to parse image reference %q: %w", ref, err)
	}
	return r, nil
}
