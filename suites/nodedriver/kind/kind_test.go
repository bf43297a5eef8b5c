package kind

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// The docker exec transport against a container is in the contract test
// (suites/nodedriver/contract), beside the other transports.

func TestNewValidates(t *testing.T) {
	for _, nodes := range [][]string{nil, {""}, {"a b"}, {"x/y"}} {
		if _, err := New(Options{Nodes: nodes}); err == nil {
			t.Errorf("New(%q): no error", nodes)
		}
	}
}

// An unknown node and RunImage without a client fail before any docker command runs.
func TestRefusedWithoutDocker(t *testing.T) {
	ctx := context.Background()
	d, err := New(Options{Nodes: []string{"n1"}, Docker: "/nonexistent/docker"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ListKeys(ctx, "other-node"); err == nil || !strings.Contains(err.Error(), `unknown node "other-node"`) {
		t.Errorf("unknown node: %v", err)
	}
	if _, err := d.RunImage(ctx, "n1", "x"); !errors.Is(err, nodedriver.ErrUnsupported) {
		t.Errorf("RunImage without client: %v, want ErrUnsupported", err)
	}
}
