package contract_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	utilexec "k8s.io/client-go/util/exec"

	"github.com/keysync-dev/keysync/internal/ociimage"
	"github.com/keysync-dev/keysync/suites/nodedriver"
	"github.com/keysync-dev/keysync/suites/nodedriver/cluster"
	"github.com/keysync-dev/keysync/suites/nodedriver/kind"
	"github.com/keysync-dev/keysync/suites/nodedriver/nodelab"
)

// driver is what the cases use of a transport's client: the keys tree, the audit and pulls.
type driver interface {
	nodedriver.KeyReader
	nodedriver.Auditor
	PullImage(ctx context.Context, node, ref string) error
}

// subject is one transport under test.
type subject struct {
	node string
	drv  driver
	// raw is the transport itself, for what the client refuses to send (a path outside the
	// tree, an unknown operation).
	raw nodedriver.Transport
	// populate writes the tree into the node's keys tree.
	populate func(t *testing.T, entries []treeEntry)
}

// inProcess is the node lab's transport: the agent library in this process.
func inProcess(t *testing.T) subject {
	root := filepath.Join(t.TempDir(), "keys")
	d, err := nodelab.New(nodelab.Options{Node: "node-lab", CRIEndpoint: filepath.Join(t.TempDir(), "crio.sock"), KeysRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return subject{node: "node-lab", drv: d, raw: d.Agent.Transport,
		populate: func(t *testing.T, entries []treeEntry) { writeTree(t, root, entries) }}
}

// podExec is the cluster driver's transport (cluster.PodExec: the agent's command line as the
// pod mounts the node's paths, exit statuses from the exec's ExitError) with a fake exec that
// runs the agent binary as a subprocess, mapping the pod's mount points to host directories.
// What differs on a cluster is only the API server's stream (client-go's remotecommand).
func podExec(t *testing.T, bin string) subject {
	hostParent, hostCRI := t.TempDir(), t.TempDir()
	root := filepath.Join(hostParent, "keys")
	mounts := strings.NewReplacer("/host/keys-parent/", hostParent+"/", "unix:///host/cri/", "unix://"+hostCRI+"/")
	fake := func(ctx context.Context, pod string, command []string, stdout, stderr io.Writer) error {
		if pod != "agent-pod-1" {
			t.Errorf("exec in pod %q, want agent-pod-1", pod)
		}
		if len(command) < 5 || command[0] != cluster.AgentBinary || command[2] != "/host/keys-parent/keys" || command[4] != "unix:///host/cri/crio.sock" {
			t.Errorf("agent command %q: not the agent with the pod's mounts", command)
		}
		args := make([]string, len(command)-1)
		for i, a := range command[1:] {
			args[i] = a
			if i == 1 || i == 3 { // the flags' values, not the operation's arguments
				args[i] = mounts.Replace(a)
			}
		}
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		err := cmd.Run()
		var xe *exec.ExitError
		if errors.As(err, &xe) {
			return utilexec.CodeExitError{Err: err, Code: xe.ExitCode()}
		}
		return err
	}
	tr := &cluster.PodExec{KeysRoot: "/etc/crio/keys", CRISocket: "unix:///var/run/crio/crio.sock", Timeout: time.Minute,
		Pod: func(_ context.Context, node string) (string, error) {
			if node != "node-1" {
				return "", errors.New("no agent pod on " + node)
			}
			return "agent-pod-1", nil
		}, Exec: fake}
	return subject{node: "node-1", drv: &nodedriver.Agent{Transport: tr}, raw: tr,
		populate: func(t *testing.T, entries []treeEntry) { writeTree(t, root, entries) }}
}

// dockerExec is the kind driver with its docker exec transport, against a container FROM
// scratch standing in for a node: it holds only the agent (as its main process, `wait`) and
// /usr/local/bin, where the driver copies the agent binary (docker cp) on first use. dockerd
// must be reachable (make test needs it): without it this FAILS.
func dockerExec(t *testing.T, bin string) subject {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Fatalf("dockerd is not reachable (make docker-prepare): %v: %s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	layer, err := ociimage.NewLayer(ociimage.File("/agent", 0o755, data), ociimage.Directory("/usr/local/bin", 0o755))
	if err != nil {
		t.Fatal(err)
	}
	img := ociimage.Image{Layers: []*ociimage.Layer{layer}, Entrypoint: []string{"/agent", nodedriver.OpWait}}
	tag, _, err := img.EnsureDocker(ctx, "keysync/node-agent-contract-test")
	if err != nil {
		t.Fatal(err)
	}
	var id [4]byte
	_, _ = rand.Read(id[:])
	node := "keysync-agent-contract-" + hex.EncodeToString(id[:])
	if out, err := exec.CommandContext(ctx, "docker", "run", "-d", "--name", node, "--network", "none",
		"--label", "app.kubernetes.io/managed-by=keysync-tests", tag).CombinedOutput(); err != nil {
		t.Fatalf("failed to start the node container: %v: %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("docker", "rm", "-f", node).Run()
		exec.Command("docker", "rmi", tag).Run()
	})
	d, err := kind.New(kind.Options{Nodes: []string{node}, AgentBinary: bin})
	if err != nil {
		t.Fatal(err)
	}
	return subject{node: node, drv: d, raw: d.Agent.Transport,
		populate: func(t *testing.T, entries []treeEntry) {
			cmd := exec.Command("docker", "cp", "-", node+":/")
			cmd.Stdin = bytes.NewReader(tarTree(t, kind.KeysRoot, entries))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("failed to copy the keys tree into %s: %v: %s", node, err, out)
			}
		}}
}
