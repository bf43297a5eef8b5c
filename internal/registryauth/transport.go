package registryauth

import "net/http"

// Transport returns a RoundTripper that sends basic authentication to every host the file
// has credentials for (distribution's htpasswd access controller asks for nothing else) and
// passes other requests through unchanged. A nil base means http.DefaultTransport.
func (f File) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return basicAuth{file: f, base: base}
}

// Client returns an http.Client like c (nil: a zero client) whose transport sends f's
// credentials (Transport).
func (f File) Client(c *http.Client) *http.Client {
	out := &http.Client{}
	if c != nil {
		*out = *c
	}
	out.Transport = f.Transport(out.Transport)
	return out
}

type basicAuth struct {
	file File
	base http.RoundTripper
}

func (b basicAuth) RoundTrip(req *http.Request) (*http.Response, error) {
	c, ok := b.file[req.URL.Host]
	if !ok || req.Header.Get("Authorization") != "" {
		return b.base.RoundTrip(req)
	}
	req = req.Clone(req.Context())
	req.SetBasicAuth(c.Username, c.Password)
	return b.base.RoundTrip(req)
}
