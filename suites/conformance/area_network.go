// Area network: pods on different nodes reach each other, by pod IP and through a Service.

package conformance

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
)

// labelNetServer selects the network feature's serving pod (value: the run ID).
const labelNetServer = "keysync.dev/net-server"

func featureNetwork() Feature {
	var (
		s              *scope
		server         *corev1.Pod
		svc            *corev1.Service
		serverNode     string
		clientNode     string
		serverSelector map[string]string
	)
	return Feature{
		Name: "pods on different nodes reach each other, by pod IP and through a Service", Area: AreaNetwork,
		Setup: func(ctx context.Context, t T, c *Context) {
			s = newScope(ctx, t, c)
			c.requireCluster(t)
			nodes := c.nodes(ctx, t)
			if len(nodes) < 2 {
				t.Skipf("needs two nodes; the cluster has %v", nodes)
			}
			serverNode, clientNode = nodes[0], nodes[len(nodes)-1]
			p := c.podFor("net-server", serverNode, c.Fixtures.Plain, fixtureServeArg, ":"+strconv.Itoa(fixturePort))
			serverSelector = map[string]string{labelNetServer: c.RunID}
			for k, v := range serverSelector {
				p.Labels[k] = v
			}
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "marker", ContainerPort: fixturePort}}
			p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 1,
				ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(fixturePort)}}}
			server = c.createPod(ctx, t, s, p)
			services := c.Client.CoreV1().Services(podNamespace)
			var err error
			svc, err = services.Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: c.nameFor("net"), Namespace: podNamespace, Labels: map[string]string{
					secrets.LabelManagedBy: secrets.ManagedByValue, secrets.LabelRunID: c.RunID}},
				Spec: corev1.ServiceSpec{Selector: serverSelector,
					Ports: []corev1.ServicePort{{Port: fixturePort, TargetPort: intstr.FromString("marker")}}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("failed to create Service: %v", err)
			}
			s.tr.Add("Service "+svc.Name, func(ctx context.Context) error {
				if err := services.Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					return fmt.Errorf("failed to delete Service %s: %w", svc.Name, err)
				}
				return nil
			})
		},
		Assess: []Step{
			{Name: "a serving pod becomes ready with an address of the pod network", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				p, err := c.waitPod(ctx, server.Name, 2*c.syncTimeout(), func(p *corev1.Pod) (bool, error) {
					if p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded {
						return false, fmt.Errorf("pod %s ended (%s): %+v", p.Name, p.Status.Phase, p.Status.ContainerStatuses)
					}
					return podReady(*p) && p.Status.PodIP != "", nil
				})
				if err != nil {
					t.Fatalf("server pod %s on node %s not ready: %v", server.Name, serverNode, err)
				}
				if p.Status.PodIP == p.Status.HostIP {
					t.Fatalf("server pod %s has its node's address %s: want one of the pod network", p.Name, p.Status.PodIP)
				}
				server = p
				t.Logf("server pod %s on node %s at %s", p.Name, serverNode, p.Status.PodIP)
			}},
			{Name: "a pod on another node reads the server's marker by pod IP and by Service ClusterIP", Profile: ProfileRequired, Fn: func(ctx context.Context, t T, c *Context) {
				if server.Status.PodIP == "" {
					t.Fatalf("the server pod has no address (previous step failed)")
				}
				addrs := []string{
					net.JoinHostPort(server.Status.PodIP, strconv.Itoa(fixturePort)),
					net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(fixturePort)),
				}
				args := append([]string{fixtureProbeArg, "-probe-timeout", "60s"}, addrs...)
				client := c.createPod(ctx, t, s, c.podFor("net-client", clientNode, c.Fixtures.Plain, args...))
				p, err := c.waitPod(ctx, client.Name, 3*time.Minute, func(p *corev1.Pod) (bool, error) {
					return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
				})
				logs, lerr := c.podLogs(ctx, client.Name)
				if err != nil {
					t.Fatalf("client pod %s on node %s did not finish: %v (logs %q, %v)", client.Name, clientNode, err, logs, lerr)
				}
				if lerr != nil {
					t.Fatalf("%v", lerr)
				}
				if strings.Contains(logs, "flag provided but not defined") {
					t.Fatalf("the fixture images predate the marker's -serve/-probe: push them again (`keysync fixtures push`, or `make lab-up`); pod %s printed:\n%s", client.Name, logs)
				}
				if missing := missingReaches(logs, addrs); p.Status.Phase != corev1.PodSucceeded || len(missing) > 0 {
					t.Fatalf("client pod %s on node %s (%s) did not reach %v on node %s; it printed:\n%s",
						client.Name, clientNode, p.Status.Phase, missing, serverNode, logs)
				}
				t.Logf("node %s reached node %s at %v", clientNode, serverNode, addrs)
			}},
		},
	}
}

// missingReaches returns the addresses a probe's output does not report as reached.
func missingReaches(logs string, addrs []string) []string {
	var missing []string
	for _, a := range addrs {
		found := false
		for _, line := range strings.Split(logs, "\n") {
			if rest, ok := strings.CutPrefix(line, fixtureReached+a+": "); ok && strings.HasPrefix(rest, names.FixtureMarkerPrefix) {
				found = true
			}
		}
		if !found {
			missing = append(missing, a)
		}
	}
	return missing
}
