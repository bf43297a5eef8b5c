package deploy

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// groups maps client-go's typed group accessors to API groups.
var groups = map[string]string{"CoreV1": "", "AppsV1": "apps", "RbacV1": "rbac.authorization.k8s.io", "CoordinationV1": "coordination.k8s.io"}

// verbs maps typed client methods to RBAC verbs (and a subresource).
var verbs = map[string]struct{ verb, sub string }{
	"Get": {"get", ""}, "List": {"list", ""}, "Watch": {"watch", ""}, "Create": {"create", ""},
	"Update": {"update", ""}, "Patch": {"patch", ""}, "Delete": {"delete", ""},
	"DeleteCollection": {"deletecollection", ""}, "UpdateStatus": {"update", "status"}, "GetLogs": {"get", "log"},
}

// triple is one API permission: "group resource[/sub] verb".
type triple struct{ group, resource, verb string }

func (t triple) String() string { return fmt.Sprintf("%q %s %s", t.group, t.resource, t.verb) }

// usedTriples lists the (group, resource, verb) of every typed client-go call and raw request
// in the non-test Go files under dirs: `<Group>V1().<Resource>(...).<Verb>(` directly, or
// through a variable holding the resource client, and RESTClient().Post().Resource(r)
// .SubResource(s) (create r/s). Anything it cannot follow is an error, so that new code
// cannot slip past it.
func usedTriples(t *testing.T, dirs ...string) map[triple][]string {
	t.Helper()
	used := map[triple][]string{}
	add := func(tr triple, where string) { used[tr] = append(used[tr], where) }
	fset := token.NewFileSet()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, p, nil, 0)
			if err != nil {
				return err
			}
			parents := map[ast.Node]ast.Node{}
			var stack []ast.Node
			ast.Inspect(f, func(n ast.Node) bool {
				if n == nil {
					stack = stack[:len(stack)-1]
					return true
				}
				if len(stack) > 0 {
					parents[n] = stack[len(stack)-1]
				}
				stack = append(stack, n)
				return true
			})
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				where := fset.Position(call.Pos()).String()
				if sel.Sel.Name == "SubResource" { // a raw request
					sub, _ := strconv.Unquote(litArg(call))
					res := ""
					for x := sel.X; ; {
						c, ok := x.(*ast.CallExpr)
						if !ok {
							break
						}
						s, ok := c.Fun.(*ast.SelectorExpr)
						if !ok {
							break
						}
						if s.Sel.Name == "Resource" {
							res, _ = strconv.Unquote(litArg(c))
						}
						x = s.X
					}
					if res == "" || sub == "" {
						t.Errorf("%s: a raw request whose resource the test cannot read", where)
					}
					add(triple{"", res + "/" + sub, "create"}, where)
					return true
				}
				g, ok := sel.X.(*ast.CallExpr)
				if !ok {
					return true
				}
				gs, ok := g.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				group, ok := groups[gs.Sel.Name]
				if !ok || sel.Sel.Name == "RESTClient" {
					return true
				}
				resource := strings.ToLower(sel.Sel.Name)
				use := func(method, where string) {
					v, ok := verbs[method]
					if !ok {
						t.Errorf("%s: %s.%s: a client method the test does not know", where, resource, method)
						return
					}
					r := resource
					if v.sub != "" {
						r += "/" + v.sub
					}
					add(triple{group, r, v.verb}, where)
				}
				switch p := parents[call].(type) {
				case *ast.SelectorExpr:
					use(p.Sel.Name, where)
				case *ast.AssignStmt:
					id, ok := p.Lhs[0].(*ast.Ident)
					if !ok || len(p.Lhs) != 1 || id.Obj == nil {
						t.Errorf("%s: the %s client is assigned to something the test cannot follow", where, resource)
						return true
					}
					ast.Inspect(f, func(m ast.Node) bool {
						ref, ok := m.(*ast.Ident)
						if !ok || ref.Obj != id.Obj || ref == id {
							return true
						}
						if s, ok := parents[ref].(*ast.SelectorExpr); ok && s.X == ref {
							use(s.Sel.Name, fset.Position(s.Pos()).String())
						} else {
							t.Errorf("%s: the %s client %s is passed on; the test cannot follow it", fset.Position(ref.Pos()), resource, id.Name)
						}
						return true
					})
				default:
					t.Errorf("%s: a %s client used in a way the test cannot follow (%T)", where, resource, p)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return used
}

func litArg(c *ast.CallExpr) string {
	if len(c.Args) == 1 {
		if l, ok := c.Args[0].(*ast.BasicLit); ok {
			return l.Value
		}
	}
	return ""
}

// grantedTriples are the (group, resource, verb) the manifest's ClusterRoles grant.
func grantedTriples(t *testing.T, data []byte) (map[triple]bool, []rbacv1.ClusterRole) {
	t.Helper()
	granted := map[triple]bool{}
	var roles []rbacv1.ClusterRole
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		if meta.Kind != "ClusterRole" {
			continue
		}
		var cr rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(doc, &cr); err != nil {
			t.Fatal(err)
		}
		roles = append(roles, cr)
		for _, r := range cr.Rules {
			// A rule with resourceNames grants its verbs on those objects only: narrower than
			// the triple, and enough for the code's one named use (checked by the kubeconfig test).
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("ClusterRole %s: rule %+v: the test only understands resource rules", cr.Name, r)
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						if g == "*" || res == "*" || v == "*" {
							t.Errorf("ClusterRole %s grants a wildcard: %+v", cr.Name, r)
						}
						granted[triple{g, res, v}] = true
					}
				}
			}
		}
	}
	return granted, roles
}

// The runner's roles grant exactly what the suites' code (and the cluster lab's) calls: every
// call is covered, and nothing is granted that no code uses.
func TestRunnerRBACIsExact(t *testing.T) {
	data, err := os.ReadFile("runner-rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, RunnerRBAC) {
		t.Fatal("RunnerRBAC is not runner-rbac.yaml")
	}
	used := usedTriples(t, "..", filepath.Join("..", "..", "lab", "clusterlab"), filepath.Join("..", "..", "internal", "leftovers"))
	granted, roles := grantedTriples(t, data)
	if len(roles) == 0 {
		t.Error("no ClusterRole in runner-rbac.yaml")
	}
	if !slices.ContainsFunc(roles, func(r rbacv1.ClusterRole) bool { return r.Name == RunnerRole }) {
		t.Errorf("no ClusterRole %s", RunnerRole)
	}
	var missing, unused []string
	for tr := range notGranted {
		if _, ok := used[tr]; !ok {
			t.Errorf("notGranted lists %s, which no code calls any more: remove it", tr)
		}
		if granted[tr] {
			t.Errorf("%s is granted, but notGranted says the runner must not have it", tr)
		}
	}
	for tr, where := range used {
		if !granted[tr] && !notGranted[tr] {
			missing = append(missing, fmt.Sprintf("%s (%s)", tr, strings.Join(where, ", ")))
		}
	}
	for tr := range granted {
		if _, ok := used[tr]; !ok && !extra[tr] {
			unused = append(unused, tr.String())
		}
	}
	sort.Strings(missing)
	sort.Strings(unused)
	if len(missing) > 0 {
		t.Errorf("calls the runner's roles do not grant:\n%s", strings.Join(missing, "\n"))
	}
	if len(unused) > 0 {
		t.Errorf("grants no code uses (remove them, or list them in extra with the reason):\n%s", strings.Join(unused, "\n"))
	}
	if len(used) < 10 {
		t.Errorf("only %d calls found: the scan is broken", len(used))
	}
}

// extra are grants the code's typed calls do not show, with why.
var extra = map[triple]bool{
	// pod exec over WebSocket (client-go's default since 1.30) is a GET; API servers before
	// 1.31 (or with AuthorizePodWebsocketUpgradeCreatePermission off) authorize it as get.
	{"", "pods/exec", "get"}: true,
	// the registry area's pullsecret.Rotate (internal/pullsecret, not scanned) lists the
	// ServiceAccounts that reference the rotated pull Secret.
	{"", "serviceaccounts", "list"}: true,
}

// notGranted are calls in the scanned code that the runner's roles deliberately do not grant,
// with why: the runner never creates, changes or deletes a namespace.
var notGranted = map[triple]bool{
	// The cluster driver creates the agent's namespace only when it is missing (the manifest
	// ships it) and the identity may (an admin, `keysync doctor`'s own namespace); else it
	// says to apply the manifest. It updates (adopts) and deletes only a namespace a keysync
	// run created. `keysync conformance cleanup` removes labelled namespaces older runs left.
	{"", "namespaces", "create"}: true,
	{"", "namespaces", "update"}: true,
	{"", "namespaces", "delete"}: true,
}
