package clusterlab

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/lab"
)

// Status checks what a run needs: the cluster answers and has the synchronizer's namespace, the
// runbook's DaemonSet has a ready pod per scheduled node (when it exists under that name), the
// registry answers, and the env file describes this lab.
func (l *Lab) Status(ctx context.Context) (lab.Status, error) {
	st := lab.Status{Kind: lab.KindCluster}
	add := func(name string, err error, detail string) {
		c := lab.Component{Name: name, Up: err == nil, Detail: detail}
		if err != nil {
			c.Detail = err.Error()
		}
		st.Components = append(st.Components, c)
	}
	cs, err := l.client()
	if err != nil {
		return st, err
	}
	ns := l.opts.SyncerNamespace
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		add("cluster", fmt.Errorf("namespace %s: %w", ns, err), "")
	} else {
		add("cluster", nil, "namespace "+ns)
	}
	ds, err := cs.AppsV1().DaemonSets(ns).Get(ctx, names.Addon, metav1.GetOptions{})
	switch {
	case err != nil:
		add("synchronizer", fmt.Errorf("DaemonSet %s/%s: %w", ns, names.Addon, err), "")
	default:
		add("synchronizer", daemonSetReady(ds), fmt.Sprintf("DaemonSet %s %d/%d ready", ds.Name, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled))
	}
	add("registry", l.registryAnswers(ctx), l.opts.Registry)
	env, err := lab.LoadEnv(l.opts.EnvPath)
	if err == nil && env.Lab != lab.KindCluster {
		err = fmt.Errorf("%s describes a %s lab", l.opts.EnvPath, env.Lab)
	}
	add("env file", err, l.opts.EnvPath)
	return st, nil
}

func daemonSetReady(ds *appsv1.DaemonSet) error {
	if ds.Status.DesiredNumberScheduled == 0 || ds.Status.NumberReady != ds.Status.DesiredNumberScheduled {
		return fmt.Errorf("DaemonSet %s: %d of %d pods ready", ds.Name, ds.Status.NumberReady, ds.Status.DesiredNumberScheduled)
	}
	return nil
}

// registryAnswers reaches the registry's API root: any HTTP answer (200, or 401 when it wants
// credentials) means it serves.
func (l *Lab) registryAnswers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: !l.opts.TLSVerify}}} //nolint:gosec // the user's --tls-verify=false
	var last error
	for _, scheme := range []string{"https", "http"} {
		if scheme == "http" && l.opts.TLSVerify {
			break
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+l.opts.Registry+"/v2/", nil)
		if err != nil {
			return fmt.Errorf("failed to build a request for %s: %w", l.opts.Registry, err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		last = err
	}
	return fmt.Errorf("registry %s does not answer: %w", l.opts.Registry, last)
}
