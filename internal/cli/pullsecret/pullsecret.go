// Package pullsecret is `keysync pullsecret`: build the registry pull Secret of the IBM Cloud
// Container Registry runbook for a region (or given registry servers), print it, or create it
// in a cluster, or rotate it in place and list what references it.
package pullsecret

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keysync-dev/keysync/internal/cli"
	"github.com/keysync-dev/keysync/internal/pullsecret"
)

type flagpole struct {
	region, regionsFile, apiKeyFile string
	servers                         []string
	kubeconfig, namespace, name     string
	output                          string
	rotate                          bool
}

// NewCommand builds `keysync pullsecret`.
func NewCommand(s *cli.Streams) *cobra.Command {
	var f flagpole
	cmd := &cobra.Command{
		Use:   "pullsecret (--region R | --server HOST...) [--kubeconfig F [--rotate]]",
		Short: "Build, apply or rotate a registry pull Secret (kubernetes.io/dockerconfigjson, user iamapikey)",
		Long: `pullsecret builds the registry pull Secret of the IBM Cloud Container Registry runbook: type
kubernetes.io/dockerconfigjson, one "auths" entry per registry host name, user "iamapikey",
the API key as password and auth = base64("iamapikey:<key>") without a trailing newline.

The host names come from --region (the runbook's table below, or --regions-file) or from
--server, repeatable (host or host:port: no scheme, no path). Region table:
` + regionTable(pullsecret.DefaultRegions()) + `
A regions file replaces the table; JSON or YAML, unknown fields rejected:
  regions:
    us: [us.icr.io, private.us.icr.io]

The API key comes from --apikey-file (one trailing newline stripped, and said so) or
` + pullsecret.EnvAPIKey + `, never from a flag value.

Without --kubeconfig the Secret is printed (keys sorted; the same input gives the same
bytes). With --kubeconfig it is created in --namespace, and an existing Secret is an error;
with --rotate the existing Secret's content is replaced in place and the pods and
ServiceAccounts of the namespace that name it in imagePullSecrets are listed: they use the
new key on their next pull, nothing is restarted. Revoke the old API key afterwards.
stdout: the Secret, or "secret/NAME created|rotated" then "pod/NAME" and
"serviceaccount/NAME" lines.`,
		Example: `  keysync pullsecret --region us --apikey-file apikey.txt > all-icr-io.yaml
  ` + pullsecret.EnvAPIKey + `=... keysync pullsecret --server registry.lab.test:5000 --name lab-pull -o json
  keysync pullsecret --region us --apikey-file new-apikey.txt --kubeconfig ~/.kube/config -n apps --rotate`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return run(cmd, s, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.region, "region", "", "registry region: "+strings.Join(pullsecret.RegionNames(pullsecret.DefaultRegions()), "|")+" (or one of --regions-file)")
	fl.StringVar(&f.regionsFile, "regions-file", "", "JSON or YAML file {regions: {REGION: [HOST, ...]}} that replaces the built-in region table")
	fl.StringArrayVar(&f.servers, "server", nil, "registry host name (host or host:port), repeatable; instead of --region")
	fl.StringVar(&f.apiKeyFile, "apikey-file", "", "file holding the registry API key; default env "+pullsecret.EnvAPIKey)
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "apply the Secret to this cluster instead of printing it")
	fl.StringVarP(&f.namespace, "namespace", "n", pullsecret.DefaultNamespace, "Secret namespace")
	fl.StringVar(&f.name, "name", pullsecret.DefaultName, "Secret name")
	fl.StringVarP(&f.output, "output", "o", "yaml", "output format when printing: yaml or json")
	fl.BoolVar(&f.rotate, "rotate", false, "replace an existing Secret's content in place and list the pods and ServiceAccounts that reference it (needs --kubeconfig)")
	return cmd
}

// check rejects contradictory or missing flags before anything is read or applied.
func (f *flagpole) check(cmd *cobra.Command) error {
	switch {
	case f.region != "" && len(f.servers) > 0:
		return errors.New("give --region or --server, not both")
	case f.region == "" && len(f.servers) == 0:
		return fmt.Errorf("give --region (%s) or --server", strings.Join(pullsecret.RegionNames(pullsecret.DefaultRegions()), ", "))
	case f.regionsFile != "" && f.region == "":
		return errors.New("--regions-file only applies with --region")
	case f.rotate && f.kubeconfig == "":
		return errors.New("--rotate needs --kubeconfig: it replaces a Secret in a cluster")
	case f.output != "yaml" && f.output != "json":
		return fmt.Errorf("invalid --output %q: want yaml or json", f.output)
	case f.kubeconfig != "" && cmd.Flags().Changed("output"):
		return errors.New("--output only applies when printing the Secret (without --kubeconfig)")
	}
	return nil
}

func (f *flagpole) hostNames() ([]string, error) {
	if f.region == "" {
		return pullsecret.Normalize(f.servers)
	}
	table := pullsecret.DefaultRegions()
	if f.regionsFile != "" {
		var err error
		if table, err = pullsecret.LoadRegions(f.regionsFile); err != nil {
			return nil, err
		}
	}
	return pullsecret.Servers(table, f.region)
}

func run(cmd *cobra.Command, s *cli.Streams, f *flagpole) error {
	if err := f.check(cmd); err != nil {
		return err
	}
	servers, err := f.hostNames()
	if err != nil {
		return err
	}
	key, err := pullsecret.ReadAPIKey(f.apiKeyFile, os.Getenv)
	if err != nil {
		return err
	}
	if key.StrippedNewline {
		s.Logger.Info("stripped one trailing newline from the API key file", "file", f.apiKeyFile)
	}
	sec, err := pullsecret.Build(f.namespace, f.name, servers, key.Value)
	if err != nil {
		return err
	}
	if f.kubeconfig == "" {
		out, err := pullsecret.Render(sec, f.output)
		if err != nil {
			return err
		}
		s.Logger.Info("built pull secret", "secret", f.namespace+"/"+f.name, "servers", strings.Join(servers, ","), "apikey_from", key.Source)
		_, err = s.Out.Write(out)
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		return fmt.Errorf("failed to load kubeconfig %s: %w", f.kubeconfig, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("failed to create Kubernetes client: %w", err)
	}
	ctx := cmd.Context()
	if !f.rotate {
		if err := pullsecret.Create(ctx, cs, sec); err != nil {
			return err
		}
		s.Logger.Info("created pull secret", "secret", f.namespace+"/"+f.name, "servers", strings.Join(servers, ","))
		_, err = fmt.Fprintf(s.Out, "secret/%s created\n", f.name)
		return err
	}
	refs, err := pullsecret.Rotate(ctx, cs, sec)
	if err != nil {
		return err
	}
	s.Logger.Info("rotated pull secret", "secret", f.namespace+"/"+f.name, "servers", strings.Join(servers, ","),
		"pods", len(refs.Pods), "serviceaccounts", len(refs.ServiceAccounts))
	var b strings.Builder
	fmt.Fprintf(&b, "secret/%s rotated\n", f.name)
	for _, p := range refs.Pods {
		fmt.Fprintf(&b, "pod/%s\n", p)
	}
	for _, sa := range refs.ServiceAccounts {
		fmt.Fprintf(&b, "serviceaccount/%s\n", sa)
	}
	_, err = fmt.Fprint(s.Out, b.String())
	return err
}

// regionTable formats the region table for the help text, one region a line.
func regionTable(regions map[string][]string) string {
	var b strings.Builder
	for _, r := range pullsecret.RegionNames(regions) {
		fmt.Fprintf(&b, "  %-4s %s\n", r, strings.Join(regions[r], " "))
	}
	return b.String()
}
