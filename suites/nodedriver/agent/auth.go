package agent

import (
	"context"
	"fmt"
	"io"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/keysync-dev/keysync/internal/registryauth"
	"github.com/keysync-dev/keysync/suites/nodedriver"
)

// maxAuthStdin bounds the auth document read from stdin.
const maxAuthStdin = 1 << 20

// authKey carries one operation's registry credentials from ServeIO to the CRI pull.
type authKey struct{}

// withAuth returns ctx carrying f, the containers-auth.json of pull/run --auth-stdin.
func withAuth(ctx context.Context, f registryauth.File) context.Context {
	return context.WithValue(ctx, authKey{}, f)
}

// authFor returns the CRI AuthConfig for ref's registry host from the operation's auth
// document: nil without --auth-stdin or without an entry for that host (the kubelet, too,
// sends nothing for a registry no pull Secret names).
func authFor(ctx context.Context, ref string) *runtimeapi.AuthConfig {
	f, _ := ctx.Value(authKey{}).(registryauth.File)
	c, ok := f.For(ref)
	if !ok {
		return nil
	}
	return &runtimeapi.AuthConfig{Username: c.Username, Password: c.Password}
}

// readAuthStdin strips --auth-stdin after pull or run (args: OP [--auth-stdin] ...) and, when
// it was there, reads the containers-auth.json document from stdin into ctx. The credentials
// never travel on a command line, where ps and audit logs would show them.
func readAuthStdin(ctx context.Context, args []string, stdin io.Reader) (context.Context, []string, error) {
	if len(args) < 2 || (args[0] != nodedriver.OpPull && args[0] != nodedriver.OpRun) || args[1] != nodedriver.FlagAuthStdin {
		return ctx, args, nil
	}
	rest := append([]string{args[0]}, args[2:]...)
	if stdin == nil {
		return ctx, rest, fmt.Errorf("%s: no stdin to read the registry credentials from", nodedriver.FlagAuthStdin)
	}
	data, err := io.ReadAll(io.LimitReader(stdin, maxAuthStdin+1))
	if err != nil {
		return ctx, rest, fmt.Errorf("%s: failed to read stdin: %w", nodedriver.FlagAuthStdin, err)
	}
	if len(data) > maxAuthStdin {
		return ctx, rest, fmt.Errorf("%s: the auth document is larger than %d bytes", nodedriver.FlagAuthStdin, maxAuthStdin)
	}
	f, err := registryauth.Parse(data)
	if err != nil {
		return ctx, rest, fmt.Errorf("%s: %w", nodedriver.FlagAuthStdin, err)
	}
	return withAuth(ctx, f), rest, nil
}
