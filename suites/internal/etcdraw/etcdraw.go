// Package etcdraw reads raw values out of a lab's etcd through etcd's v3 JSON gateway
// (POST /v3/kv/range), with the lab's TLS client files when the endpoint is https, and judges
// whether a value is a KMS v2 envelope (kube-apiserver's k8s:enc:kms:v2:<provider>: prefix and
// its EncryptedObject) holding none of a secret's bytes. It needs no etcd client library.
package etcdraw

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// SecretKey is the etcd key of a Secret under kube-apiserver's default prefix.
func SecretKey(namespace, name string) string {
	return "/registry/secrets/" + namespace + "/" + name
}

// Config says how to reach etcd: its client URLs and, for https, the CA and client files.
type Config struct {
	Endpoints                 []string
	CAFile, CertFile, KeyFile string
}

// Client reads raw values from etcd.
type Client struct {
	endpoints []string
	hc        *http.Client
}

// New builds a client for cfg; TLS files are read now, so a bad path is an error here.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoint (ETCD_ENDPOINTS)")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("failed to read etcd CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("failed to parse etcd CA file %s: no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		if (cfg.CertFile == "") != (cfg.KeyFile == "") {
			return nil, errors.New("ETCD_CERT_FILE and ETCD_KEY_FILE go together")
		}
		if cfg.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("failed to load etcd client certificate: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = tc
	}
	eps := make([]string, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		eps[i] = strings.TrimRight(e, "/")
	}
	return &Client{endpoints: eps, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
}

// ErrNotFound is returned by Get when etcd holds no value at the key.
var ErrNotFound = errors.New("no value in etcd")

// Get returns the raw value at key, trying each endpoint in turn.
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte(key))})
	var errs []error
	for _, ep := range c.endpoints {
		v, err := c.get(ctx, ep, body)
		if err == nil || errors.Is(err, ErrNotFound) {
			if err != nil {
				return nil, fmt.Errorf("failed to read %s from etcd: %w", key, err)
			}
			return v, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep, err))
	}
	return nil, fmt.Errorf("failed to read %s from etcd: %w", key, errors.Join(errs...))
}

func (c *Client) get(ctx context.Context, endpoint string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint+"/v3/kv/range", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(data[:min(len(data), 200)]))
	}
	var out struct {
		KVs []struct {
			Value string `json:"value"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("failed to decode the gateway's answer: %w", err)
	}
	if len(out.KVs) == 0 {
		return nil, ErrNotFound
	}
	v, err := base64.StdEncoding.DecodeString(out.KVs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("failed to decode the value: %w", err)
	}
	return v, nil
}
