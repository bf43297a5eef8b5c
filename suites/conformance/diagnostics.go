package conformance

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/internal/secrets"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// Diagnostics limits.
const (
	diagLogLines    = 50 // last lines of each synchronizer log
	diagEvents      = 40 // last Events of the synchronizer's namespace
	diagTimeout     = 30 * time.Second
	envSyncerLog    = "SYNCER_LOG"    // env file: the host synchronizer's log file (node lab)
	envNodeLabLogs  = "NODE_LAB_LOGS" // env file: older node labs' log dir (syncer.log in it)
	syncerLogInLogs = "syncer.log"
)

// diagnose collects what a person looks at after a failed check: the synchronizer's logs (its
// pods' last lines through the API; on the node lab its host log file), the Events of its
// namespace and of the Pods this run made, and every node's keys-tree audit (types, modes,
// sizes, sha256, CRI-O's verdicts: never key bytes). It never fails: what cannot be collected
// says why. PEM private keys that a synchronizer might log are redacted.
func (c *Context) diagnose(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), diagTimeout)
	defer cancel()
	var b strings.Builder
	c.diagSyncerLogs(ctx, &b)
	c.diagEvents(ctx, &b)
	c.diagTree(ctx, &b)
	return redactKeys(strings.TrimRight(b.String(), "\n"))
}

func section(w io.Writer, title string) { fmt.Fprintf(w, "--- %s\n", title) }

func (c *Context) diagSyncerLogs(ctx context.Context, w io.Writer) {
	if c.Client != nil {
		pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: secrets.LabelManagedBy + "!=" + secrets.ManagedByValue})
		if err != nil {
			section(w, "synchronizer pods")
			fmt.Fprintf(w, "failed to list pods in %s: %v\n", c.Namespace, err)
		}
		if pods != nil {
			for _, p := range pods.Items {
				for _, ct := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
					section(w, fmt.Sprintf("log of pod %s/%s container %s on node %s (last %d lines)", p.Namespace, p.Name, ct.Name, p.Spec.NodeName, diagLogLines))
					tail := int64(diagLogLines)
					data, err := c.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: ct.Name, TailLines: &tail}).DoRaw(ctx)
					if err != nil {
						fmt.Fprintf(w, "failed to read: %v\n", err)
						continue
					}
					writeBlock(w, string(data))
				}
			}
		}
	}
	if path := c.syncerLogFile(); path != "" {
		section(w, fmt.Sprintf("synchronizer log %s (last %d lines)", path, diagLogLines))
		lines, err := tailFile(path, diagLogLines)
		if err != nil {
			fmt.Fprintf(w, "failed to read: %v\n", err)
			return
		}
		writeBlock(w, strings.Join(lines, "\n"))
	}
}

// syncerLogFile is the host synchronizer's log file (node lab: SYNCER_LOG, or syncer.log in
// NODE_LAB_LOGS for env files written before SYNCER_LOG), "" when the lab names none or the
// file is not on this host.
func (c *Context) syncerLogFile() string {
	if c.Lab.Access() != lab.AccessHost {
		return ""
	}
	if p := c.Lab.Extra[envSyncerLog]; p != "" {
		return p
	}
	if d := c.Lab.Extra[envNodeLabLogs]; d != "" {
		return filepath.Join(d, syncerLogInLogs)
	}
	return ""
}

func (c *Context) diagEvents(ctx context.Context, w io.Writer) {
	if c.Client == nil {
		return
	}
	section(w, fmt.Sprintf("Events in namespace %s (last %d)", c.Namespace, diagEvents))
	list, err := c.Client.CoreV1().Events(c.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(w, "failed to list: %v\n", err)
	} else {
		writeEvents(w, list.Items, diagEvents, nil)
	}
	prefix := c.nameFor("")
	list, err = c.Client.CoreV1().Events(podNamespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod"})
	if err != nil {
		section(w, "Events of this run's Pods")
		fmt.Fprintf(w, "failed to list: %v\n", err)
		return
	}
	ours := func(e corev1.Event) bool { return strings.HasPrefix(e.InvolvedObject.Name, prefix) }
	if n := countEvents(list.Items, ours); n > 0 {
		section(w, fmt.Sprintf("Events of this run's Pods (%s*)", prefix))
		writeEvents(w, list.Items, diagEvents, ours)
	}
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

func countEvents(evs []corev1.Event, keep func(corev1.Event) bool) int {
	n := 0
	for _, e := range evs {
		if keep == nil || keep(e) {
			n++
		}
	}
	return n
}

// writeEvents writes the last max Events that keep accepts, oldest first.
func writeEvents(w io.Writer, evs []corev1.Event, max int, keep func(corev1.Event) bool) {
	var sel []corev1.Event
	for _, e := range evs {
		if keep == nil || keep(e) {
			sel = append(sel, e)
		}
	}
	sort.SliceStable(sel, func(i, j int) bool { return eventTime(sel[i]).Before(eventTime(sel[j])) })
	if len(sel) > max {
		sel = sel[len(sel)-max:]
	}
	if len(sel) == 0 {
		fmt.Fprintln(w, "(none)")
	}
	for _, e := range sel {
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (x%d)", e.Count)
		}
		fmt.Fprintf(w, "%s %s %s %s/%s: %s%s\n", eventTime(e).UTC().Format(time.RFC3339), e.Type, e.Reason,
			e.InvolvedObject.Kind, e.InvolvedObject.Name, strings.TrimSpace(e.Message), count)
	}
}

func (c *Context) diagTree(ctx context.Context, w io.Writer) {
	if c.Driver == nil {
		return
	}
	nodes, err := c.Driver.Nodes(ctx)
	if err != nil {
		section(w, "keys tree")
		fmt.Fprintf(w, "failed to list nodes: %v\n", err)
		return
	}
	for _, n := range nodes {
		section(w, fmt.Sprintf("keys tree of node %s (TYPE MODE SIZE SHA256 VERDICT PATH)", n))
		entries, err := nodedriver.AuditKeys(ctx, c.Driver, n)
		if err != nil {
			fmt.Fprintf(w, "failed to audit: %v\n", err)
			continue
		}
		if len(entries) == 0 {
			fmt.Fprintln(w, "(empty)")
		}
		if err := nodedriver.FormatAudit(w, entries); err != nil {
			fmt.Fprintf(w, "%v\n", err)
		}
	}
}

func writeBlock(w io.Writer, s string) {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		s = "(empty)"
	}
	fmt.Fprintln(w, s)
}

// tailFile returns the last n lines of the file at path.
func tailFile(path string, n int) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open log: %w", err)
	}
	defer f.Close()
	var ring []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		ring = append(ring, sc.Text())
		if len(ring) > n {
			ring = ring[1:]
		}
	}
	if err := sc.Err(); err != nil {
		return ring, fmt.Errorf("failed to read log: %w", err)
	}
	return ring, nil
}

// pemPrivateKey matches a PEM private key block, or its start when the log cut it short.
var pemPrivateKey = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(-----END [A-Z0-9 ]*PRIVATE KEY-----|\z)`)

// redactKeys replaces PEM private keys with a placeholder: diagnostics never carry key bytes,
// even when a synchronizer logs them.
func redactKeys(s string) string {
	return pemPrivateKey.ReplaceAllString(s, "[private key redacted]")
}
