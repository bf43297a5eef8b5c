package ociimage

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	imgspec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/keysync-dev/keysync/internal/registry"
)

// countingTransport counts requests by method.
type countingTransport struct {
	mu    sync.Mutex
	count map[string]int
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.count[req.Method]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (c *countingTransport) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.count
	c.count = map[string]int{}
	return prev
}

// TestPush pushes to a real registry (Debian's docker-registry: make deps) and reads back.
func TestPush(t *testing.T) {
	ctx := context.Background()
	reg, err := registry.Start(ctx, registry.Options{})
	if err != nil {
		t.Fatalf("failed to start the registry (install it with `make deps`): %v", err)
	}
	t.Cleanup(func() { _ = reg.Stop() })

	prog, err := NewLayer(File("/catatonit", 0o755, []byte("#!/bin/true\n")))
	if err != nil {
		t.Fatal(err)
	}
	data, err := NewLayer(File("/etc/x", 0o644, []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewLayer(File("/etc/x", 0o644, []byte("y")))
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Layers: []*Layer{prog, data}, Entrypoint: []string{"/catatonit", "-P"}, Labels: map[string]string{"l": "v"}}
	counter := &countingTransport{}
	counter.reset()
	client := &http.Client{Transport: counter}

	steps := []struct {
		name, repo, tag string
		img             Image
		wantUploads     int  // blobs uploaded (POSTs)
		sameAsFirst     bool // same manifest digest as the first push
	}{
		{name: "first push", repo: "keysync/pause", tag: "3.10.1", img: img, wantUploads: 3, sameAsFirst: true},
		{name: "same image, other tag", repo: "keysync/pause", tag: "again", img: img, wantUploads: 0, sameAsFirst: true},
		{name: "one new layer", repo: "keysync/pause", tag: "other", wantUploads: 2, // config + the new layer
			img: Image{Layers: []*Layer{prog, other}, Entrypoint: []string{"/catatonit", "-P"}, Labels: map[string]string{"l": "v"}}},
		{name: "other config", repo: "keysync/pause", tag: "v", wantUploads: 1,
			img: Image{Layers: []*Layer{prog, data}, Entrypoint: []string{"/catatonit"}}},
	}
	var first digest.Digest
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			d, err := st.img.Push(ctx, client, reg.Addr(), st.repo, st.tag)
			if err != nil {
				t.Fatal(err)
			}
			if n := counter.reset()[http.MethodPost]; n != st.wantUploads {
				t.Errorf("%d blob uploads, want %d", n, st.wantUploads)
			}
			_, want, _ := st.img.Manifest()
			if d != want {
				t.Errorf("digest %s, want %s", d, want)
			}
			if first == "" {
				first = d
			}
			if st.sameAsFirst != (d == first) {
				t.Errorf("digest %s, first push %s; want the same: %v", d, first, st.sameAsFirst)
			}
			checkPushed(t, "http://"+reg.Addr()+"/v2/"+st.repo, st.tag, d, st.img)
		})
	}
}

// checkPushed reads repo:tag back from the registry: the manifest by tag and its blobs.
func checkPushed(t *testing.T, base, tag string, want digest.Digest, img Image) {
	t.Helper()
	get := func(url string, accept string) []byte {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s (%v): %s", url, resp.Status, err, body)
		}
		return body
	}
	man := get(base+"/manifests/"+tag, imgspec.MediaTypeImageManifest)
	if got := digest.FromBytes(man); got != want {
		t.Fatalf("served manifest digest %s, want %s", got, want)
	}
	var m imgspec.Manifest
	if err := json.Unmarshal(man, &m); err != nil {
		t.Fatal(err)
	}
	cfg := get(base+"/blobs/"+m.Config.Digest.String(), "")
	wantCfg, _, _ := img.Config()
	if string(cfg) != string(wantCfg) {
		t.Errorf("config = %s, want %s", cfg, wantCfg)
	}
	if len(m.Layers) != len(img.Layers) {
		t.Fatalf("%d layers, want %d", len(m.Layers), len(img.Layers))
	}
	for i, l := range m.Layers {
		if l.MediaType != imgspec.MediaTypeImageLayerGzip || digest.FromBytes(get(base+"/blobs/"+l.Digest.String(), "")) != img.Layers[i].Digest() {
			t.Errorf("layer %d = %+v", i, l)
		}
	}
}

func TestPushErrors(t *testing.T) {
	const secret = "upload-state-SECRET"
	down := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	// fake is a registry that has no blobs, hands out upload locations with a state token in
	// their query, and answers uploads and manifests with the given statuses.
	fake := func(location string, putBlob, putManifest int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case r.Method == http.MethodHead:
				w.WriteHeader(http.StatusNotFound)
			case r.Method == http.MethodPost:
				w.Header().Set("Location", location)
				w.WriteHeader(http.StatusAccepted)
			case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/"):
				w.WriteHeader(putManifest)
			case r.Method == http.MethodPut:
				w.WriteHeader(putBlob)
				io.WriteString(w, "rejected")
			}
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	tests := []struct {
		name     string
		registry string
		wantErr  []string
	}{
		{name: "registry down", registry: down(), wantErr: []string{"failed to start blob upload"}},
		{name: "upload rejected", registry: fake("/v2/r/blobs/uploads/u?_state="+secret, http.StatusBadRequest, http.StatusCreated),
			wantErr: []string{"failed to upload blob sha256:", "PUT http://", "/v2/r/blobs/uploads/u: status 400", "rejected"}},
		{name: "upload location down", registry: fake("http://"+down()+"/v2/r/blobs/uploads/u?_state="+secret, http.StatusCreated, http.StatusCreated),
			wantErr: []string{"failed to upload blob sha256:", "/v2/r/blobs/uploads/u: ", "connection refused"}},
		{name: "manifest rejected", registry: fake("/v2/r/blobs/uploads/u?_state="+secret, http.StatusCreated, http.StatusBadRequest),
			wantErr: []string{"failed to push manifest", "/r:t", "status 400"}},
	}
	l, err := NewLayer(File("/x", 0o644, []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	img := Image{Layers: []*Layer{l}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := img.Push(context.Background(), http.DefaultClient, tt.registry, "r", "t")
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("err = %v, want %q in it", err, want)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("err = %v shows the upload state", err)
			}
		})
	}
}
