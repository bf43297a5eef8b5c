package doctor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/doctor"
	dt "github.com/keysync-dev/keysync/internal/doctor/doctortest"
	"github.com/keysync-dev/keysync/internal/kpkey"
	"github.com/keysync-dev/keysync/internal/names"
	"github.com/keysync-dev/keysync/mockkp/mockkptest"
)

// want is one result a case must produce.
type want struct {
	check, subject, found, fix string
	status                     doctor.Status // default doctor.Fail
}

// tcase deploys a healthy synchronizer in its own namespace, breaks one thing, runs every
// check and wants exactly its failures (every check not named in wants must not fail).
type tcase struct {
	name   string
	cfg    func(kp *mockkptest.Env) kpkey.Config // default dt.Config()
	env    func(e *doctor.Env)
	break_ func(ctx context.Context, t *testing.T, c *tc)
	wants  []want
	// secrets must appear in no output (dt.APIKey always).
	secrets []string
	// results: check ID → how many results it must give (checks not named: any number).
	results map[string]int
}

// tc is what a case's break_ gets.
type tc struct {
	cs   kubernetes.Interface
	ns   string
	insp *dt.Inspector
}

func TestChecks(t *testing.T) {
	_, cs := dt.Cluster(t)
	kp := mockkptest.Start(t)
	const wrongKey = "wrong-apikey-MUST-NOT-LEAK-0000"

	cases := []tcase{
		{name: "healthy", wants: nil},
		{name: "DaemonSet nodeSelector matches no node",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				updateDS(ctx, t, c, func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{"disktype": "ssd"} })
				deletePods(ctx, t, c, dt.Nodes...) // what the DaemonSet controller would do
			},
			wants: []want{
				{check: "pods", found: "only 0/2 schedulable nodes run a Running and Ready synchronizer pod"},
				{check: "pods", subject: "node n1", found: "no synchronizer pod: nodeSelector disktype=ssd does not match (the node has no label disktype)", fix: "fix the DaemonSet's nodeSelector"},
				{check: "pods", subject: "node n2", found: "nodeSelector disktype=ssd does not match"},
			}},
		{name: "Role deleted",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				must(t, c.cs.RbacV1().Roles(c.ns).Delete(ctx, names.Addon, metav1.DeleteOptions{}))
			},
			wants: []want{{check: "role", found: "Role {ns}/addon-image-key-synchronizer not found", fix: "reference manifest: syncer/deploy/role.yaml"}}},
		{name: "RoleBinding points elsewhere",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				must(t, c.cs.RbacV1().RoleBindings(c.ns).Delete(ctx, names.Addon, metav1.DeleteOptions{}))
				_, err := c.cs.RbacV1().RoleBindings(c.ns).Create(ctx, dt.RoleBinding(c.ns, "ClusterRole", "view", "default"), metav1.CreateOptions{})
				must(t, err)
			},
			wants: []want{{check: "rolebinding", found: "roleRef is ClusterRole/view, want Role/addon-image-key-synchronizer; subjects ServiceAccount {ns}/default, want ServiceAccount {ns}/addon-image-key-synchronizer"}}},
		{name: "ServiceAccount deleted",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				must(t, c.cs.CoreV1().ServiceAccounts(c.ns).Delete(ctx, names.Addon, metav1.DeleteOptions{}))
			},
			wants: []want{{check: "serviceaccount", found: "ServiceAccount {ns}/addon-image-key-synchronizer not found"}}},
		{name: "keyprotect-config with an http URL",
			cfg: func(*mockkptest.Env) kpkey.Config {
				c := dt.Config()
				c.URL = "http://kms.example"
				return c
			},
			wants: []want{{check: "kp-config", found: "keyprotect-url is http://kms.example, not https", fix: "use the https endpoint"}}},
		{name: "keyprotect-config with an http URL allowed for a lab",
			cfg: func(*mockkptest.Env) kpkey.Config {
				c := dt.Config()
				c.URL = "http://kms.example"
				return c
			},
			env:   func(e *doctor.Env) { e.AllowHTTPKP = true },
			wants: []want{{check: "kp-config", status: doctor.Warn, found: "keyprotect-url is http://kms.example, not https: the API key and the unwrapped keys would cross the network in clear (allowed by --allow-http-kp)"}}},
		{name: "malformed config.json",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				putConfig(ctx, t, c, []byte(`{"keyprotect-url": "https://kms.example", "apikey": "`+dt.APIKey+`", "instance-id": }`))
			},
			wants: []want{{check: "kp-config", found: "config.json cannot be parsed: invalid keyprotect-config: config.json is not valid JSON: syntax error at offset"}}},
		{name: "config.json without an apikey",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				putConfig(ctx, t, c, []byte(`{"keyprotect-url": "https://kms.example", "instance-id": "i"}`))
			},
			wants: []want{{check: "kp-config", found: "config.json cannot be parsed: invalid keyprotect-config: apikey is missing"}}},
		{name: "keyprotect-config missing while kp-key Secrets exist",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				must(t, c.cs.CoreV1().Secrets(c.ns).Delete(ctx, names.KPConfigSecret, metav1.DeleteOptions{}))
				_, err := c.cs.CoreV1().Secrets(c.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wrapped", Namespace: c.ns},
					Type: names.SecretTypeKPKey, Data: map[string][]byte{kpkey.RootKeyIDKey: []byte("r"), kpkey.CiphertextKey: []byte("c")}}, metav1.CreateOptions{})
				must(t, err)
			},
			wants: []want{{check: "kp-config", found: "keyprotect-config not found, and 1 kp-key Secret(s) cannot be unwrapped without it"}}},
		{name: "node tainted NoSchedule, not tolerated",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				updateDS(ctx, t, c, func(s *corev1.PodSpec) { s.Tolerations = nil })
				taint(ctx, t, c.cs, "n2", corev1.Taint{Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectNoSchedule})
				deletePods(ctx, t, c, "n2")
			},
			wants: []want{
				{check: "pods", found: "only 1/2 schedulable nodes"},
				{check: "pods", subject: "node n2", found: "no synchronizer pod: taint dedicated=infra:NoSchedule is not tolerated", fix: "add a toleration for the taint"},
			}},
		{name: "not enough CPU on a node",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				deletePods(ctx, t, c, "n2")
				hog(ctx, t, c, "n2", "2")
			},
			wants: []want{
				{check: "pods", found: "only 1/2 schedulable nodes"},
				{check: "pods", subject: "node n2", found: "no synchronizer pod: insufficient cpu: the DaemonSet requests 10m, the node has 0 free of 2 allocatable", fix: "lower the DaemonSet's resource requests"},
			}},
		{name: "synchronizer pod pending: the scheduler finds no room",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				deletePods(ctx, t, c, "n2")
				ds, err := c.cs.AppsV1().DaemonSets(c.ns).Get(ctx, names.Addon, metav1.GetOptions{})
				must(t, err)
				spec := ds.Spec.Template.Spec
				spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
					NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{
						{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}}}}}}}}
				p, err := c.cs.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "syncer-pending", Namespace: c.ns, Labels: dt.PodLabels},
					Spec: spec}, metav1.CreateOptions{})
				must(t, err)
				p.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
					Reason: "Unschedulable", Message: "0/2 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector."}}}
				_, err = c.cs.CoreV1().Pods(c.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				must(t, err)
				dt.Event(ctx, t, c.cs, c.ns, "Pod", "syncer-pending", string(p.UID), "FailedScheduling", "", "0/2 nodes are available: 1 Insufficient memory.")
			},
			wants: []want{
				{check: "pods", found: "only 1/2 schedulable nodes"},
				{check: "pods", subject: "node n2", found: "pod syncer-pending is not Running and Ready: not scheduled: 0/2 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector.; FailedScheduling: 0/2 nodes are available: 1 Insufficient memory.",
					fix: "free resources on the node or lower the DaemonSet's resource requests"},
			}},
		{name: "synchronizer pod in ImagePullBackOff",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				p, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, dt.PodName("n1"), metav1.GetOptions{})
				must(t, err)
				p.Status = corev1.PodStatus{Phase: corev1.PodPending,
					Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}},
					ContainerStatuses: []corev1.ContainerStatus{{Name: "syncer", Image: dt.Image, State: corev1.ContainerState{
						Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: `Back-off pulling image "` + dt.Image + `"`}}}}}
				_, err = c.cs.CoreV1().Pods(c.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				must(t, err)
			},
			wants: []want{
				{check: "pods", found: "only 1/2 schedulable nodes"},
				{check: "pods", subject: "node n1", found: "pod syncer-n1 is not Running and Ready: container syncer cannot pull image keysync-syncer:dev (ImagePullBackOff: Back-off pulling image",
					fix: "registry credentials: check imagePullSecrets"},
			}},
		{name: "synchronizer pod crash-looping",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				p, err := c.cs.CoreV1().Pods(c.ns).Get(ctx, dt.PodName("n2"), metav1.GetOptions{})
				must(t, err)
				p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "syncer", Image: dt.Image, RestartCount: 7,
					State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2}}}}
				_, err = c.cs.CoreV1().Pods(c.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
				must(t, err)
			},
			wants: []want{
				{check: "pods", found: "only 1/2 schedulable nodes"},
				{check: "pods", subject: "node n2", found: "container syncer is crash-looping (7 restarts, last exit code 2)", fix: "logs syncer-n2 -c syncer --previous"},
			}},
		{name: "a public key in a node's tree",
			break_: func(_ context.Context, _ *testing.T, c *tc) {
				c.insp.Verdicts = map[string][]doctor.Verdict{"n1": append(dt.HealthyVerdicts(),
					doctor.Verdict{Path: "synced/pub.pem", Type: doctor.TypeFile, Mode: 0o600, Size: 451, Why: "Unknown decryption key type"})}
			},
			wants: []want{{check: "node-keys-tree", subject: "node n1", found: "synced/pub.pem: CRI-O cannot use it: Unknown decryption key type", fix: "remove it from the keys tree"}}},
		{name: "a symlink in a node's tree",
			break_: func(_ context.Context, _ *testing.T, c *tc) {
				c.insp.Verdicts = map[string][]doctor.Verdict{"n2": append(dt.HealthyVerdicts(),
					doctor.Verdict{Path: "mounted/..data", Type: doctor.TypeSymlink, Mode: 0o777})}
			},
			wants: []want{{check: "node-keys-tree", subject: "node n2", found: "mounted/..data: symbolic link (CRI-O: symbolic links not supported in decryption keys paths)"}}},
		{name: "temp file and bad mode in a node's tree",
			break_: func(_ context.Context, _ *testing.T, c *tc) {
				c.insp.Verdicts = map[string][]doctor.Verdict{"n1": append(dt.HealthyVerdicts(),
					doctor.Verdict{Path: "synced/.k.pem.tmp-123", Type: doctor.TypeFile, Mode: 0o600, Accepted: true},
					doctor.Verdict{Path: "synced/k2.pem", Type: doctor.TypeFile, Mode: 0o644, Accepted: true})}
			},
			wants: []want{
				{check: "node-keys-tree", subject: "node n1", found: "synced/.k.pem.tmp-123: temp or hidden file (CRI-O reads it as a key)"},
				{check: "node-keys-tree", subject: "node n1", found: "synced/k2.pem: mode 0644 lets group/others read a private key, want 0600", fix: "chmod 0600"},
			}},
		{name: "CRI-O's keys path points elsewhere",
			break_: func(_ context.Context, _ *testing.T, c *tc) {
				c.insp.KeysPath = map[string]string{"n2": "/etc/crio/other-keys"}
			},
			wants: []want{{check: "node-keys-path", subject: "node n2",
				found: "CRI-O's decryption_keys_path is /etc/crio/other-keys, which does not contain the synchronizer's /etc/crio/keys/synced: CRI-O never sees the synced keys",
				fix:   `set decryption_keys_path = "/etc/crio/keys"`}}},
		{name: "node agent unreachable",
			break_: func(_ context.Context, _ *testing.T, c *tc) {
				c.insp.Err = map[string]error{"n1": errors.New("agent pod on n1 did not start")}
			},
			wants: []want{
				{check: "node-keys-tree", subject: "node n1", found: "cannot audit the keys tree: agent pod on n1 did not start"},
				{check: "node-keys-path", subject: "node n1", found: "cannot read CRI-O's decryption_keys_path: agent pod on n1 did not start"},
			}},
		{name: "failure Events on Secrets",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				uid := badSecret(ctx, t, c, "n1", "n2")
				// A synchronizer that logs its API key in an Event: doctor must not repeat it.
				dt.Event(ctx, t, c.cs, c.ns, "Secret", "gone", "uid-of-a-deleted-secret", "UnwrapFailed", "n1", "unwrap with apikey "+dt.APIKey+" failed")
				dt.Event(ctx, t, c.cs, c.ns, "Secret", "bad", uid, "KeySynced", "n1", "fine")
			},
			wants: []want{
				{check: "secret-events", subject: "Secret bad", found: "KeyRejected ×2 on node(s) n1, n2, last", fix: "replace it with a PEM private key"},
				{check: "secret-events", subject: "Secret gone", status: doctor.Warn, found: "UnwrapFailed ×1 on node(s) n1, last"},
				{check: "secret-events", subject: "Secret gone", status: doctor.Warn, found: "unwrap with apikey [REDACTED] failed (the Secret has since been deleted or replaced)"},
			}},
		{name: "failure Events on many deleted Secrets: one line for them",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				badSecret(ctx, t, c, "n1")
				for _, n := range []string{"gone1", "gone2", "gone3"} {
					dt.Event(ctx, t, c.cs, c.ns, "Secret", n, "uid-of-"+n, "KeyRejected", "n1", "not a private key")
				}
				dt.Event(ctx, t, c.cs, c.ns, "Secret", "gone4", "uid-of-gone4", "UnwrapFailed", "n2", "unwrap with apikey "+dt.APIKey+" failed")
				dt.Event(ctx, t, c.cs, c.ns, "Secret", "gone4", "uid-of-gone4", "UnwrapFailed", "n1", "unwrap with apikey "+dt.APIKey+" failed")
			},
			wants: []want{
				{check: "secret-events", subject: "Secret bad", found: "KeyRejected ×1 on node(s) n1, last"},
				{check: "secret-events", subject: "4 deleted or replaced Secret(s)", status: doctor.Warn,
					found: "failure Events on 4 Secret(s) since deleted or replaced: KeyRejected ×3, UnwrapFailed ×2 (kubectl -n {ns} get events"},
			},
			results: map[string]int{"secret-events": 2}},
		{name: "pulls failing for a missing decryption key: pods that exist",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				appPod(ctx, t, c, "app", "n1", "rpc error: code = Unknown desc = decrypting layer sha256:0123: "+missingKey)
				uid := appPod(ctx, t, c, "app2", "n2", "")
				pullEvent(ctx, t, c, "app2", uid, "n2", missingKey)
			},
			wants: []want{
				{check: "decrypt-failures", subject: "node n1", found: `image localhost:5000/enc/app:1: pulls fail with "missing private key needed for decryption" (1 pod(s): {ns}/app)`,
					fix: "the node has no private key for this image"},
				{check: "decrypt-failures", subject: "node n2", found: `image localhost:5000/enc/app:1: pulls fail with "missing private key needed for decryption" (1 pod(s): {ns}/app2)`},
			}},
		{name: "pulls failing with the wrong key: a pod that exists",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				uid := appPod(ctx, t, c, "app", "n1", "")
				pullEvent(ctx, t, c, "app", uid, "", "none of the private keys could be used for decryption")
			},
			wants: []want{
				{check: "decrypt-failures", subject: "node n1", found: `pulls fail with "none of the private keys could be used for decryption" (1 pod(s): {ns}/app)`,
					fix: "wrong key"},
			}},
		{name: "missing-key Events of a deleted pod: a warning",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				pullEvent(ctx, t, c, "gone", "uid-of-a-deleted-pod", "n2", missingKey)
				pullEvent(ctx, t, c, "gone2", "", "n2", missingKey)
			},
			wants: []want{
				{check: "decrypt-failures", subject: "node n2", status: doctor.Warn,
					found: `image localhost:5000/enc/app:1: pulls failed with "missing private key needed for decryption" (2 pod(s), since deleted or replaced: {ns}/gone, {ns}/gone2)`},
			}},
		{name: "missing-key Events of many deleted pods: one line for them",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				pullEvent(ctx, t, c, "gone1", "", "n1", missingKey)
				pullEvent(ctx, t, c, "gone2", "", "n2", missingKey)
				pullEvent(ctx, t, c, "gone3", "", "n1", "none of the private keys could be used for decryption")
				pullEvent(ctx, t, c, "gone4", "", "n2", "none of the private keys could be used for decryption")
				pullEvent(ctx, t, c, "gone5", "", "n2", missingKey)
				// gone1 also failed with the wrong key: still one pod.
				pullEvent(ctx, t, c, "gone1", "", "n1", "none of the private keys could be used for decryption")
			},
			wants: []want{
				{check: "decrypt-failures", subject: "5 deleted or replaced pod(s)", status: doctor.Warn,
					found: "pulls failed for a missing or wrong key in 5 pod(s) since deleted or replaced: by node n2 ×3, n1 ×2; by image " + appImage + " ×5"},
			},
			results: map[string]int{"decrypt-failures": 1}},
		{name: "missing-key Events of a replaced pod: a warning",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				appPod(ctx, t, c, "app", "n1", "")
				pullEvent(ctx, t, c, "app", "uid-of-the-pod-before", "n1", missingKey)
			},
			wants: []want{
				{check: "decrypt-failures", subject: "node n1", status: doctor.Warn, found: "(1 pod(s), since deleted or replaced: {ns}/app)"},
			}},
		{name: "missing-key Events of a deleted and of a live pod on one node",
			break_: func(ctx context.Context, t *testing.T, c *tc) {
				uid := appPod(ctx, t, c, "app", "n1", "")
				pullEvent(ctx, t, c, "app", uid, "n1", missingKey)
				pullEvent(ctx, t, c, "gone", "uid-of-a-deleted-pod", "n1", missingKey)
			},
			wants: []want{
				{check: "decrypt-failures", subject: "node n1", found: `pulls fail with "missing private key needed for decryption" (1 pod(s): {ns}/app)`},
				{check: "decrypt-failures", subject: "node n1", status: doctor.Warn, found: "(1 pod(s), since deleted or replaced: {ns}/gone)"},
			}},
		{name: "Key Protect reachable (--check-kp)",
			cfg: func(kp *mockkptest.Env) kpkey.Config { return kp.Config() },
			env: func(e *doctor.Env) { e.CheckKP, e.AllowHTTPKP = true, true },
			wants: []want{
				{check: "kp-config", status: doctor.Warn, found: "keyprotect-url is " + kp.URL + ", not https"},
				{check: "kp-config", status: doctor.Warn, found: "token-url is " + kp.TokenURL + ", not https"},
				{check: "kp-access", status: doctor.OK, subject: "IAM", found: "IAM issued a token for the API key"},
				{check: "kp-access", status: doctor.OK, subject: "Key Protect", found: "Key Protect instance " + kp.InstanceID + " answers a metadata call (1 key(s) listed)"},
			},
			secrets: []string{kp.APIKey}},
		{name: "Key Protect with a wrong API key (--check-kp)",
			cfg: func(kp *mockkptest.Env) kpkey.Config {
				c := kp.Config()
				c.APIKey = wrongKey
				return c
			},
			env: func(e *doctor.Env) { e.CheckKP, e.AllowHTTPKP = true, true },
			wants: []want{
				{check: "kp-config", status: doctor.Warn, found: "keyprotect-url is"},
				{check: "kp-access", subject: "IAM", found: "IAM at " + kp.TokenURL + " refused the API key (HTTP 400, BXNIM0415E",
					fix: "the apikey in keyprotect-config is wrong, expired or deleted"},
			},
			secrets: []string{wrongKey}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			ns := dt.Namespace(i)
			cfg := dt.Config()
			if c.cfg != nil {
				cfg = c.cfg(kp)
			}
			dt.Deploy(ctx, t, cs, ns, cfg)
			x := &tc{cs: cs, ns: ns, insp: &dt.Inspector{}}
			if c.break_ != nil {
				c.break_(ctx, t, x)
			}
			env := doctor.Env{Client: cs, Namespace: ns, Inspector: x.insp}
			if c.env != nil {
				c.env(&env)
			}
			rep := doctor.Run(ctx, env, doctor.Checks())
			var text, js bytes.Buffer
			if err := doctor.WriteText(&text, rep); err != nil {
				t.Fatal(err)
			}
			if err := doctor.WriteJSON(&js, rep); err != nil {
				t.Fatal(err)
			}
			t.Logf("doctor output:\n%s", text.String())
			assertReport(t, rep, ns, c.wants)
			for check, want := range c.results {
				got := 0
				for _, r := range rep.Results {
					if r.Check == check {
						got++
					}
				}
				if got != want {
					t.Errorf("%s gave %d result(s), want %d", check, got, want)
				}
			}
			for _, s := range append(c.secrets, dt.APIKey) {
				if strings.Contains(text.String(), s) || strings.Contains(js.String(), s) {
					t.Errorf("the output contains the API key %q", s)
				}
			}
			var back doctor.Report
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.Schema != doctor.Schema || len(back.Results) != len(rep.Results) {
				t.Errorf("JSON does not round-trip: %v", err)
			}
		})
	}
}

func assertReport(t *testing.T, rep doctor.Report, ns string, wants []want) {
	t.Helper()
	allowed := map[string]bool{}
	for _, w := range wants {
		st := w.status
		if st == "" {
			st = doctor.Fail
		}
		if st == doctor.Fail {
			allowed[w.check] = true
		}
		w.found = strings.ReplaceAll(w.found, "{ns}", ns)
		found := false
		for _, r := range rep.Results {
			if r.Check == w.check && r.Status == st && strings.Contains(r.Subject, w.subject) &&
				strings.Contains(r.Found, w.found) && strings.Contains(r.Fix, w.fix) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no %s result of %s with subject %q, found %q, fix %q", st, w.check, w.subject, w.found, w.fix)
		}
	}
	for _, r := range rep.Results {
		if r.Status == doctor.Fail && !allowed[r.Check] {
			t.Errorf("unexpected failure: %s: %s: %s", r.Check, r.Subject, r.Found)
		}
		if r.Status == doctor.Skip && r.Check != "kp-access" {
			t.Errorf("unexpected skip: %s: %s", r.Check, r.Found)
		}
	}
	if len(wants) == 0 {
		for _, r := range rep.Results {
			if r.Status != doctor.OK && !(r.Check == "kp-access" && r.Status == doctor.Skip) {
				t.Errorf("healthy: %s %s: %s", r.Status, r.Check, r.Found)
			}
		}
	}
}

const (
	appImage   = "localhost:5000/enc/app:1"
	missingKey = "missing private key needed for decryption"
)

// appPod creates a pod of appImage on node until the test ends (decrypt-failures looks at every
// namespace), its container waiting with waitMsg when set, and returns its UID.
func appPod(ctx context.Context, t *testing.T, c *tc, name, node, waitMsg string) string {
	t.Helper()
	p, err := c.cs.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: appImage}}}}, metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = c.cs.CoreV1().Pods(c.ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
	if waitMsg != "" {
		p.Status = corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: appImage,
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: waitMsg}}}}}
		_, err = c.cs.CoreV1().Pods(c.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		must(t, err)
	}
	return string(p.UID)
}

// pullEvent records, until the test ends, a kubelet's Failed Event for a pull of appImage by
// pod name (uid: the pod's, or another's for a pod since deleted or replaced) failing with why.
func pullEvent(ctx context.Context, t *testing.T, c *tc, name, uid, node, why string) {
	t.Helper()
	ev := dt.Event(ctx, t, c.cs, c.ns, "Pod", name, uid, "Failed", node,
		`Failed to pull image "`+appImage+`": rpc error: code = Unknown desc = decrypting layer sha256:0123: `+why)
	t.Cleanup(func() { _ = c.cs.CoreV1().Events(c.ns).Delete(context.Background(), ev.Name, metav1.DeleteOptions{}) })
}

// badSecret creates the key Secret "bad" holding no key, with a KeyRejected Event from each
// node, and returns its UID.
func badSecret(ctx context.Context, t *testing.T, c *tc, nodes ...string) string {
	t.Helper()
	s, err := c.cs.CoreV1().Secrets(c.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: c.ns},
		Type: names.SecretTypeKey, Data: map[string][]byte{"k.pem": []byte("not a key")}}, metav1.CreateOptions{})
	must(t, err)
	for _, n := range nodes {
		dt.Event(ctx, t, c.cs, c.ns, "Secret", "bad", string(s.UID), "KeyRejected", n, "data key k.pem: not a private key")
	}
	return string(s.UID)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func updateDS(ctx context.Context, t *testing.T, c *tc, f func(*corev1.PodSpec)) {
	t.Helper()
	ds, err := c.cs.AppsV1().DaemonSets(c.ns).Get(ctx, names.Addon, metav1.GetOptions{})
	must(t, err)
	f(&ds.Spec.Template.Spec)
	_, err = c.cs.AppsV1().DaemonSets(c.ns).Update(ctx, ds, metav1.UpdateOptions{})
	must(t, err)
}

func deletePods(ctx context.Context, t *testing.T, c *tc, nodes ...string) {
	t.Helper()
	for _, n := range nodes {
		must(t, c.cs.CoreV1().Pods(c.ns).Delete(ctx, dt.PodName(n), metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	}
}

func putConfig(ctx context.Context, t *testing.T, c *tc, data []byte) {
	t.Helper()
	s, err := c.cs.CoreV1().Secrets(c.ns).Get(ctx, names.KPConfigSecret, metav1.GetOptions{})
	must(t, err)
	s.Data[names.KPConfigKey] = data
	_, err = c.cs.CoreV1().Secrets(c.ns).Update(ctx, s, metav1.UpdateOptions{})
	must(t, err)
}

// taint taints node until the test ends.
func taint(ctx context.Context, t *testing.T, cs kubernetes.Interface, node string, tn corev1.Taint) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	must(t, err)
	n.Spec.Taints = append(n.Spec.Taints, tn)
	_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	must(t, err)
	t.Cleanup(func() {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err == nil {
			n.Spec.Taints = nil
			_, err = cs.CoreV1().Nodes().Update(context.Background(), n, metav1.UpdateOptions{})
		}
		if err != nil {
			t.Errorf("failed to remove the taint: %v", err)
		}
	})
}

// hog puts a pod requesting cpu on node until the test ends.
func hog(ctx context.Context, t *testing.T, c *tc, node, cpu string) {
	t.Helper()
	_, err := c.cs.CoreV1().Pods(c.ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hog", Namespace: c.ns},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "hog", Image: "hog",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}}},
		metav1.CreateOptions{})
	must(t, err)
	t.Cleanup(func() {
		_ = c.cs.CoreV1().Pods(c.ns).Delete(context.Background(), "hog", metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	})
}
