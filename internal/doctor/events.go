package doctor

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/keysync-dev/keysync/internal/names"
)

// failureWords mark an Event reason on a Secret as a failure (KeyRejected, UnwrapFailed,
// ConfigMissing, and what other synchronizers call the same things).
var failureWords = []string{"Reject", "Fail", "Invalid", "Missing"}

// eventTime is when an Event last happened.
func eventTime(ev *corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	default:
		return ev.CreationTimestamp.Time
	}
}

func eventCount(ev *corev1.Event) int {
	switch {
	case ev.Series != nil && ev.Series.Count > 0:
		return int(ev.Series.Count)
	case ev.Count > 0:
		return int(ev.Count)
	default:
		return 1
	}
}

func eventNode(ev *corev1.Event) string {
	if ev.Source.Host != "" {
		return ev.Source.Host
	}
	return ev.ReportingInstance
}

func (e *Env) recent(ev *corev1.Event) bool {
	return e.now().Sub(eventTime(ev)) <= e.window()
}

func checkSecretEvents(ctx context.Context, e *Env) []Result {
	list, err := e.Client.CoreV1().Events(e.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.kind", "Secret").String()})
	if err != nil {
		return []Result{apiFail("", "Events in "+e.Namespace, err, "")}
	}
	type group struct {
		secret, uid, reason, message string
		count                        int
		nodes                        []string
		last                         time.Time
	}
	groups := map[string]*group{}
	for i := range list.Items {
		ev := &list.Items[i]
		if !e.recent(ev) || !isFailureReason(ev.Reason) {
			continue
		}
		key := ev.InvolvedObject.Name + "\x00" + ev.Reason
		g := groups[key]
		if g == nil {
			g = &group{secret: ev.InvolvedObject.Name, reason: ev.Reason}
			groups[key] = g
		}
		g.count += eventCount(ev)
		if n := eventNode(ev); n != "" && !containsString(g.nodes, n) {
			g.nodes = append(g.nodes, n)
		}
		if t := eventTime(ev); !t.Before(g.last) {
			g.last, g.message, g.uid = t, ev.Message, string(ev.InvolvedObject.UID)
		}
	}
	if len(groups) == 0 {
		return []Result{ok("", fmt.Sprintf("no failure Events (reasons with %s) on Secrets in %s in the last %s",
			strings.Join(failureWords, "/"), e.Namespace, e.window()))}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out, gone []Result
	goneSecrets, goneReasons := map[string]bool{}, map[string]int{}
	for _, k := range keys {
		g := groups[k]
		sort.Strings(g.nodes)
		where := ""
		if len(g.nodes) > 0 {
			where = " on node(s) " + strings.Join(g.nodes, ", ")
		}
		found := fmt.Sprintf("%s ×%d%s, last %s ago: %s", g.reason, g.count, where,
			e.now().Sub(g.last).Truncate(time.Second), clip(g.message))
		subject := "Secret " + g.secret
		if !secretExists(ctx, e, e.Namespace, g.secret, g.uid) {
			gone = append(gone, warn(subject, found+" (the Secret has since been deleted or replaced)", ""))
			goneSecrets[g.secret] = true
			goneReasons[g.reason] += g.count
			continue
		}
		out = append(out, fail(subject, found, eventFix(g.reason, e.Namespace, g.secret)))
	}
	if len(gone) <= maxGoneShown {
		return append(out, gone...)
	}
	// Many (a test run's deliberate bad Secrets, since deleted): one line, not one each.
	return append(out, warn(fmt.Sprintf("%d deleted or replaced Secret(s)", len(goneSecrets)),
		fmt.Sprintf("failure Events on %d Secret(s) since deleted or replaced: %s (kubectl -n %s get events --field-selector involvedObject.kind=Secret)",
			len(goneSecrets), countsLine(goneReasons), e.Namespace), ""))
}

// maxGoneShown: up to this many warnings about deleted objects are shown one by one; more
// (what a test run leaves in the Event window) are summed up in one.
const maxGoneShown = 3

// countsLine lists name ×count, largest first (then by name).
func countsLine(counts map[string]int) string {
	ks := make([]string, 0, len(counts))
	for k := range counts {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if counts[ks[i]] != counts[ks[j]] {
			return counts[ks[i]] > counts[ks[j]]
		}
		return ks[i] < ks[j]
	})
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = fmt.Sprintf("%s ×%d", k, counts[k])
	}
	return strings.Join(parts, ", ")
}

func isFailureReason(reason string) bool {
	for _, w := range failureWords {
		if strings.Contains(reason, w) {
			return true
		}
	}
	return false
}

func eventFix(reason, ns, secret string) string {
	switch {
	case strings.Contains(reason, "Unwrap"):
		return "check keyprotect-config and the Secret's rootkeyid and ciphertext (run doctor --check-kp); the root key must be active"
	case strings.Contains(reason, "Config"):
		return kpConfigFix
	case strings.Contains(reason, "Reject") || strings.Contains(reason, "Invalid"):
		return "the Secret's data is not a private key CRI-O accepts (see the message): replace it with a PEM private key (type " +
			names.SecretTypeKey + ") or a kp-key wrapping base64 of one"
	default:
		return fmt.Sprintf("kubectl -n %s describe secret %s", ns, secret)
	}
}

func secretExists(ctx context.Context, e *Env, ns, name, uid string) bool {
	s, err := e.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	return uid == "" || string(s.UID) == uid
}

// Pull failures CRI-O reports when the node's keys cannot decrypt an image.
const (
	msgMissingKey = "missing private key needed for decryption"
	msgWrongKey   = "none of the private keys could be used for decryption"
)

var pullImageRE = regexp.MustCompile(`image "([^"]+)"`)

// checkDecryptFailures summarises, by node and image, pulls that failed because the node had
// no key (or no right key) for an encrypted image: pod Events and pod statuses, all namespaces.
// Pulls of pods that still exist fail; Events of pods since deleted or replaced (a test's
// expected failure, an old rollout) are warnings, as secret-events does for deleted Secrets.
func checkDecryptFailures(ctx context.Context, e *Env) []Result {
	type group struct {
		node, image, kind string
		gone              bool
		pods              []string
	}
	groups := map[string]*group{}
	add := func(node, image, kind, pod string, gone bool) {
		if node == "" {
			node = "(unknown node)"
		}
		if image == "" {
			image = "(unknown image)"
		}
		k := fmt.Sprintf("%s\x00%s\x00%s\x00%t", node, image, kind, gone)
		g := groups[k]
		if g == nil {
			g = &group{node: node, image: image, kind: kind, gone: gone}
			groups[k] = g
		}
		if !containsString(g.pods, pod) {
			g.pods = append(g.pods, pod)
		}
	}
	evs, err := e.Client.CoreV1().Events("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.kind", "Pod").String()})
	if err != nil {
		return []Result{apiFail("", "pod Events", err, "")}
	}
	pods, err := e.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return []Result{apiFail("", "pods", err, "")}
	}
	live := map[string]*corev1.Pod{} // namespace/name → the pod as it is now
	for i := range pods.Items {
		p := &pods.Items[i]
		live[p.Namespace+"/"+p.Name] = p
		for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if w := cs.State.Waiting; w != nil {
				if kind := decryptKind(w.Message); kind != "" {
					add(p.Spec.NodeName, cs.Image, kind, p.Namespace+"/"+p.Name, false)
				}
			}
		}
	}
	for i := range evs.Items {
		ev := &evs.Items[i]
		kind := decryptKind(ev.Message)
		if kind == "" || !e.recent(ev) {
			continue
		}
		pod := ev.InvolvedObject.Namespace + "/" + ev.InvolvedObject.Name
		p := live[pod]
		gone := p == nil || (ev.InvolvedObject.UID != "" && ev.InvolvedObject.UID != p.UID)
		node := eventNode(ev)
		if node == "" && !gone {
			node = p.Spec.NodeName
		}
		image := ""
		if m := pullImageRE.FindStringSubmatch(ev.Message); m != nil {
			image = m[1]
		}
		add(node, image, kind, pod, gone)
	}
	if len(groups) == 0 {
		return []Result{ok("", fmt.Sprintf("no pulls failing with %q in pod statuses or in Events of the last %s", msgMissingKey, e.window()))}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out, gone []Result
	// Each pod counts once overall, once per node and once per image (a pod may be in two
	// groups: two images, or a missing and a wrong key).
	gonePods, goneNodes, goneImages := map[string]bool{}, map[string]map[string]bool{}, map[string]map[string]bool{}
	addTo := func(m map[string]map[string]bool, k, pod string) {
		if m[k] == nil {
			m[k] = map[string]bool{}
		}
		m[k][pod] = true
	}
	for _, k := range keys {
		g := groups[k]
		sort.Strings(g.pods)
		shown := g.pods
		if len(shown) > 5 {
			shown = append(append([]string{}, shown[:5]...), fmt.Sprintf("and %d more", len(g.pods)-5))
		}
		if g.gone {
			gone = append(gone, warn("node "+g.node, fmt.Sprintf("image %s: pulls failed with %q (%d pod(s), since deleted or replaced: %s)",
				g.image, g.kind, len(g.pods), strings.Join(shown, ", ")), ""))
			for _, p := range g.pods {
				gonePods[p] = true
				addTo(goneNodes, g.node, p)
				addTo(goneImages, g.image, p)
			}
			continue
		}
		found := fmt.Sprintf("image %s: pulls fail with %q (%d pod(s): %s)", g.image, g.kind, len(g.pods), strings.Join(shown, ", "))
		fix := fmt.Sprintf("the node has no private key for this image: create its key or kp-key Secret in %s, then check the Secret's Events and the synchronizer pod on %s", e.Namespace, g.node)
		if g.kind == msgWrongKey {
			fix = fmt.Sprintf("the node's keys do not match this image (wrong key): put the image's own private key in a Secret in %s", e.Namespace)
		}
		out = append(out, fail("node "+g.node, found, fix))
	}
	if len(gone) <= maxGoneShown {
		return append(out, gone...)
	}
	return append(out, warn(fmt.Sprintf("%d deleted or replaced pod(s)", len(gonePods)),
		fmt.Sprintf("pulls failed for a missing or wrong key in %d pod(s) since deleted or replaced: by node %s; by image %s",
			len(gonePods), countsLine(sizes(goneNodes)), countsLine(sizes(goneImages))), ""))
}

// sizes maps each key to the size of its set.
func sizes(m map[string]map[string]bool) map[string]int {
	out := make(map[string]int, len(m))
	for k, set := range m {
		out[k] = len(set)
	}
	return out
}

func decryptKind(msg string) string {
	switch {
	case strings.Contains(msg, msgMissingKey):
		return msgMissingKey
	case strings.Contains(msg, msgWrongKey):
		return msgWrongKey
	default:
		return ""
	}
}
