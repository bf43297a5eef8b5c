package conformance

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/lab"
	"github.com/keysync-dev/keysync/suites/conformance"
)

// sweepPlanted is `keysync conformance cleanup`'s node side: with --lab-env of a lab with
// capability plant, what killed runs left planted in the nodes' keys trees (area foreign) is
// removed too (conformance.SweepPlanted). Without --lab-env it does nothing: where the keys
// tree is and how to reach it is the lab's.
func sweepPlanted(ctx context.Context, s *cli.Streams, cs kubernetes.Interface, labEnv, runID string, dryRun bool) error {
	if labEnv == "" {
		return nil
	}
	env, err := lab.LoadEnv(labEnv)
	if err != nil {
		return fmt.Errorf("failed to load lab env file %s: %w", labEnv, err)
	}
	if !env.Has(lab.CapPlant) {
		return nil
	}
	var nodes []string
	if env.Access() == lab.AccessDocker {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("failed to list the nodes: %w", err)
		}
		for _, n := range list.Items {
			nodes = append(nodes, n.Name)
		}
	}
	done, err := conformance.SweepPlanted(ctx, env, nodes, runID, dryRun)
	verb := "removed planted"
	if dryRun {
		verb = "would remove planted"
	}
	for _, d := range done {
		fmt.Fprintf(s.Out, "%s %s\n", verb, d)
	}
	fmt.Fprintf(s.ErrOut, "%s %d path(s) in the nodes' keys trees\n", verb, len(done))
	if err != nil {
		return fmt.Errorf("failed to remove what runs planted in the nodes' keys trees: %w", err)
	}
	return nil
}
