#!/usr/bin/env bash
# Writes a kubeconfig bound only to the conformance runner's roles (suites/deploy/runner-rbac.yaml):
# applies the manifest with an admin kubeconfig, asks the TokenRequest API for a token of the
# ServiceAccount keysync-runner/keysync-conformance-runner, and writes a kubeconfig with that
# token and the admin kubeconfig's server and CA (no admin credential is copied).
#   hack/runner-kubeconfig.sh ADMIN_KUBECONFIG [OUT (default _out/runner.kubeconfig)]
# Env: KUBECTL (default kubectl), RUNNER_TOKEN_DURATION (default 2h).
set -euo pipefail
admin=${1:?usage: $0 ADMIN_KUBECONFIG [OUT]}
out=${2:-_out/runner.kubeconfig}
kubectl=${KUBECTL:-kubectl}
duration=${RUNNER_TOKEN_DURATION:-2h}
root=$(cd "$(dirname "$0")/.." && pwd)
k() { "$kubectl" --kubeconfig "$admin" "$@"; }

k apply -f "$root/suites/deploy/runner-rbac.yaml" >&2
token=$(k create token keysync-conformance-runner -n keysync-runner --duration "$duration")
ctx=$(k config current-context)
cluster=$(k config view --raw -o jsonpath="{.contexts[?(@.name==\"$ctx\")].context.cluster}")
server=$(k config view --raw -o jsonpath="{.clusters[?(@.name==\"$cluster\")].cluster.server}")
ca=$(k config view --raw -o jsonpath="{.clusters[?(@.name==\"$cluster\")].cluster.certificate-authority-data}")
caf=$(k config view --raw -o jsonpath="{.clusters[?(@.name==\"$cluster\")].cluster.certificate-authority}")
insecure=$(k config view --raw -o jsonpath="{.clusters[?(@.name==\"$cluster\")].cluster.insecure-skip-tls-verify}")
if [ -z "$ca" ] && [ -n "$caf" ]; then
	ca=$(base64 -w0 <"$caf")
fi
if [ -n "$ca" ]; then
	tls="certificate-authority-data: $ca"
elif [ "$insecure" = true ]; then
	tls="insecure-skip-tls-verify: true" # as the admin kubeconfig does (a test server's self-signed cert)
else
	echo "$admin: cluster $cluster has no CA" >&2
	exit 1
fi
mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
chmod 600 "$tmp"
cat >"$tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: runner
  cluster:
    server: $server
    $tls
users:
- name: keysync-conformance-runner
  user:
    token: $token
contexts:
- name: runner
  context:
    cluster: runner
    user: keysync-conformance-runner
current-context: runner
KUBECONFIG
mv "$tmp" "$out"
trap - EXIT
echo "wrote $out (ServiceAccount keysync-runner/keysync-conformance-runner, token valid $duration)" >&2
