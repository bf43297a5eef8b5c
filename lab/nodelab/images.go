package nodelab

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/keysync-dev/keysync/fixtures"
	"github.com/keysync-dev/keysync/fixtures/manifest"
	"github.com/keysync-dev/keysync/internal/ociimage"
)

const (
	// PauseRepo is the pause image's repository in the lab registry; its tag is PAUSE_VERSION.
	PauseRepo = "keysync/pause"
	// defaultPauseVersion is used when PAUSE_VERSION is not in the environment.
	defaultPauseVersion = "3.10.1"
)

func pauseVersion() string {
	if v := os.Getenv("PAUSE_VERSION"); v != "" {
		return v
	}
	return defaultPauseVersion
}

func (r *runner) pauseImage() string {
	return r.st.Registry + "/" + PauseRepo + ":" + pauseVersion()
}

// pushPause pushes the pause image (Debian's catatonit -P, FROM scratch) to the lab registry;
// blobs the registry holds are not sent again.
func (r *runner) pushPause(ctx context.Context) (string, error) {
	catatonit, err := ociimage.HostFile("/catatonit", catatonitPath)
	if err != nil {
		return "", fmt.Errorf("failed to build the pause image: %w", err)
	}
	catatonit.Mode = 0o755
	layer, err := ociimage.NewLayer(catatonit)
	if err != nil {
		return "", fmt.Errorf("failed to build the pause image: %w", err)
	}
	img := ociimage.Image{
		Layers:     []*ociimage.Layer{layer},
		Entrypoint: []string{"/catatonit", "-P"},
		Labels:     map[string]string{"io.k8s.keysync.pause": "catatonit"},
	}
	client, err := r.registryClient()
	if err != nil {
		return "", err
	}
	digest, err := img.Push(ctx, client, r.st.Registry, PauseRepo, pauseVersion())
	if err != nil {
		return "", fmt.Errorf("failed to push the pause image: %w", err)
	}
	return r.pauseImage() + "@" + digest.String()[:19], nil
}

// pushFixtures pushes the fixtures (package fixtures, in this process) unless the registry
// already serves every variant of the manifest on disk. Progress goes to logs/fixtures.log.
func (r *runner) pushFixtures(ctx context.Context) (string, error) {
	if n, ok := r.fixturesPresent(ctx); ok {
		return fmt.Sprintf("reused %d variants", n), nil
	}
	logPath := r.l.Log("fixtures")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return "", fmt.Errorf("failed to open %s: %w", logPath, err)
	}
	defer logf.Close()
	_, err = fixtures.Push(ctx, fixtures.Options{Out: r.l.FixturesDir(), Registry: r.st.Registry,
		AuthFile: r.l.RegistryAuthFile(), InsecureSkipTLSVerify: true, SourceDir: r.opts.sourceDir(), Logger: slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		return "", fmt.Errorf("failed to push the fixtures (log %s): %w", logPath, err)
	}
	n, ok := r.fixturesPresent(ctx)
	if !ok {
		return "", fmt.Errorf("fixtures pushed but %s does not list them in the registry (log %s)", r.l.FixturesManifest(), logPath)
	}
	return fmt.Sprintf("%d variants", n), nil
}

// fixturesPresent reports whether the manifest exists, names this registry and the registry
// serves every variant's manifest.
func (r *runner) fixturesPresent(ctx context.Context) (int, bool) {
	m, err := manifest.Load(r.l.FixturesManifest())
	if err != nil {
		return 0, false
	}
	for _, v := range m.Variants {
		if !r.registryServes(ctx, v.Reference) {
			return 0, false
		}
	}
	return len(m.Variants), true
}

// registryServes reports whether ref names the lab registry and it serves ref's manifest.
func (r *runner) registryServes(ctx context.Context, ref string) bool {
	repoTag, ok := strings.CutPrefix(ref, r.st.Registry+"/")
	if !ok {
		return false
	}
	repo, tag := repoTag, "latest"
	if i := strings.Index(repoTag, "@"); i >= 0 {
		repo, tag = repoTag[:i], repoTag[i+1:]
	} else if i := strings.LastIndex(repoTag, ":"); i >= 0 {
		repo, tag = repoTag[:i], repoTag[i+1:]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+r.st.Registry+"/v2/"+repo+"/manifests/"+tag, nil)
	if err != nil {
		return false
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	client, err := r.registryClient()
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
