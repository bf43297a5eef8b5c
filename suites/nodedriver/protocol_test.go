package nodedriver

import (
	"context"
	"errors"
	"io"
	"reflect"
	"testing"
)

// stdinTransport records what the agent would get: its arguments and its stdin.
type stdinTransport struct {
	args  [][]string
	stdin []string
}

func (s *stdinTransport) RunAgent(ctx context.Context, node string, args []string, stdout, stderr io.Writer) (int, error) {
	return s.RunAgentStdin(ctx, node, args, nil, stdout, stderr)
}

func (s *stdinTransport) RunAgentStdin(_ context.Context, _ string, args []string, stdin io.Reader, stdout, _ io.Writer) (int, error) {
	s.args = append(s.args, args)
	in := "<none>"
	if stdin != nil {
		b, _ := io.ReadAll(stdin)
		in = string(b)
	}
	s.stdin = append(s.stdin, in)
	_, _ = io.WriteString(stdout, "out")
	return 0, nil
}

// TestAgentAuth: credentials go to the agent's stdin behind --auth-stdin, never into its
// arguments; nil credentials pull without them; a transport without stdin refuses.
func TestAgentAuth(t *testing.T) {
	t.Parallel()
	doc := []byte(`{"auths":{"reg.test":{"auth":"dTpw"}}}`)
	tr := &stdinTransport{}
	a := &Agent{Transport: tr}
	ctx := context.Background()
	if err := a.PullImageAuth(ctx, "n", "reg.test/x:1", doc); err != nil {
		t.Fatal(err)
	}
	if err := a.PullImageAuth(ctx, "n", "reg.test/x:1", nil); err != nil {
		t.Fatal(err)
	}
	if out, err := a.RunImageArgsAuth(ctx, "n", "reg.test/x:1", []string{"-once"}, doc); err != nil || out != "out" {
		t.Fatalf("run: %q %v", out, err)
	}
	wantArgs := [][]string{{"pull", "--auth-stdin", "reg.test/x:1"}, {"pull", "reg.test/x:1"}, {"run", "--auth-stdin", "reg.test/x:1", "-once"}}
	wantStdin := []string{string(doc), "<none>", string(doc)}
	if !reflect.DeepEqual(tr.args, wantArgs) || !reflect.DeepEqual(tr.stdin, wantStdin) {
		t.Fatalf("agent got args %q stdin %q, want %q %q", tr.args, tr.stdin, wantArgs, wantStdin)
	}
	plain := &Agent{Transport: TransportFunc(func(context.Context, string, []string, io.Writer, io.Writer) (int, error) { return 0, nil })}
	if err := plain.PullImageAuth(ctx, "n", "reg.test/x:1", doc); !errors.Is(err, ErrNoStdin) {
		t.Fatalf("transport without stdin: %v, want ErrNoStdin", err)
	}
}
