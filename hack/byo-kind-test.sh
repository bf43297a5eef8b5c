#!/usr/bin/env bash
# The kind lab's bring-your-own-synchronizer path on a real cluster (CI runs it last, on the
# kind lab): a kustomize directory written here as a synchronizer author would write theirs
# — the runbook's manifests (syncer/deploy) with an image already in the lab registry, the lab
# CA trusted by the author's own patch (README, "Test your own synchronizer"), and none of the
# lab's settings for the reference (no --allow-insecure-kp) — is deployed by
# `make lab-up SYNCHRONIZER=DIR` on the running lab. Then:
#   - the env file names that directory as the synchronizer under test, with kp-public-names;
#   - the running DaemonSet is the author's (no --allow-insecure-kp) with the lab's hostAliases;
#   - the Key Protect features (area kp) judge it through the public names and the
#     runbook-only keyprotect-config, every check run (none skipped) and passed, and mockkp
#     saw its token and unwrap requests arrive at those names over TLS;
#   - the JUnit and HTML reports name the directory.
# Usage: hack/byo-kind-test.sh [LAB_ENV]   (default _out/lab.env; the lab stays up, running
# the directory's synchronizer: make lab-up again deploys the reference)
set -euo pipefail
cd "$(dirname "$0")/.."
lab_env=${1:-_out/lab.env}
start=$(date +%s)
pass=0 fail=0
check() { # check NAME COMMAND...: one ✓/✗ line
  local name=$1; shift
  if "$@"; then echo "✓ $name"; pass=$((pass + 1)); else echo "✗ $name"; fail=$((fail + 1)); fi
}
envval() { sed -n "s/^$1=//p" "$lab_env" | head -1; }

[ -f "$lab_env" ] || { echo "byo-kind-test: no $lab_env: make lab-up first" >&2; exit 2; }
[ "$(envval KEYSYNC_LAB)" = kind ] || { echo "byo-kind-test: $lab_env is not a kind lab" >&2; exit 2; }
kubectl="$(hack/build-k8s.sh kubectl)/kubectl"
kc=$(envval KUBECONFIG)
ns=$(envval SYNCER_NAMESPACE)
k() { "$kubectl" --kubeconfig "$kc" "$@"; }

# The image the lab pushed for the reference stands in for the author's own image.
image=$(k -n "$ns" get daemonset addon-image-key-synchronizer -o jsonpath='{.spec.template.spec.containers[0].image}')
[ -n "$image" ] || { echo "byo-kind-test: no synchronizer image on the lab" >&2; exit 2; }
dir=$PWD/_out/byo-synchronizer
rm -rf "$dir" && mkdir -p "$dir"
cat >"$dir/kustomization.yaml" <<EOF
# A synchronizer author's kustomize directory (written by hack/byo-kind-test.sh).
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../syncer/deploy
images:
  - name: keysync-syncer
    newName: ${image%:*}
    newTag: "${image##*:}"
patches:
  - target: {kind: DaemonSet, name: addon-image-key-synchronizer}
    patch: |-
      - op: add
        path: /spec/template/spec/volumes/-
        value: {name: my-lab-ca, configMap: {name: keysync-lab-ca}}
      - op: add
        path: /spec/template/spec/containers/0/volumeMounts/-
        value: {name: my-lab-ca, mountPath: /etc/my-lab-ca, readOnly: true}
      - op: add
        path: /spec/template/spec/containers/0/env/-
        value: {name: SSL_CERT_FILE, value: /etc/my-lab-ca/ca.crt}
EOF

echo "--- make lab-up SYNCHRONIZER=$dir"
make lab-up LAB_ENV="$lab_env" SYNCHRONIZER="$dir"

check "the env file names the directory as the synchronizer under test" \
  test "$(envval SYNCHRONIZER)" = "$dir"
check "the env file claims kp-public-names (the lab mapped the names for it)" \
  grep -Eq '^CAPABILITIES=(.*,)?kp-public-names(,|$)' "$lab_env"
args=$(k -n "$ns" get daemonset addon-image-key-synchronizer -o jsonpath='{.spec.template.spec.containers[0].args}')
check "the running DaemonSet is the directory's (no --allow-insecure-kp, the author's CA mount)" \
  bash -c '[[ $1 != *--allow-insecure-kp* ]] && [[ $2 == *my-lab-ca* ]]' _ "$args" \
  "$(k -n "$ns" get daemonset addon-image-key-synchronizer -o jsonpath='{.spec.template.spec.volumes}')"
# lab up waits for the rollout; the old pods may take a moment more to be gone.
pods_are_authors() {
  local vols i
  for i in $(seq 60); do
    vols=$(k -n "$ns" get pods -l app.kubernetes.io/name=addon-image-key-synchronizer \
      -o jsonpath='{range .items[*]}{.spec.volumes[*].name}{"\n"}{end}')
    if [ -n "$vols" ] && ! grep -qv my-lab-ca <<<"$vols"; then return 0; fi
    sleep 1
  done
  echo "pods' volumes: $vols" >&2
  return 1
}
check "every synchronizer pod running is the directory's (the old pods are gone)" pods_are_authors
check "the lab's hostAliases map IAM's and Key Protect's names in its pods" \
  bash -c '[[ $1 == *iam.cloud.ibm.com*us-south.kms.cloud.ibm.com* ]]' _ \
  "$(k -n "$ns" get daemonset addon-image-key-synchronizer -o jsonpath='{.spec.template.spec.hostAliases}')"

echo "--- make conformance SUITE_ARGS='--labels area=kp'"
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
rc=0
make conformance LAB_ENV="$lab_env" SUITE_ARGS="--labels area=kp" || rc=$?
check "the Key Protect features pass against it (make conformance exit 0)" test "$rc" -eq 0
# mockkp logs every request with the name the client used and the listener (tls=true: :443).
kplog=$(docker logs --since "$since" keysync-mockkp 2>&1)
check "it got its IAM token at IAM's public name (the client's default), over TLS" \
  grep -Eq 'host=iam\.cloud\.ibm\.com tls=true path=/oidc/token .*status=200' <<<"$kplog"
check "it unwrapped at Key Protect's public name, over TLS" \
  grep -Eq 'host=us-south\.kms\.cloud\.ibm\.com tls=true path=/api/v2/keys/[^ ]+/actions/unwrap op=unwrap status=200' <<<"$kplog"
check "every Key Protect check ran (none skipped) and some did" \
  bash -c 'grep -q "<testcase" _out/junit.xml && ! grep -q "<skipped" _out/junit.xml'
check "the JUnit names the synchronizer judged" grep -qF "$dir" _out/junit.xml
check "the HTML report names the synchronizer judged" grep -qF "$dir" _out/report.html

echo "byo-kind-test: $pass passed, $fail failed in $(( $(date +%s) - start ))s"
[ "$fail" -eq 0 ]
