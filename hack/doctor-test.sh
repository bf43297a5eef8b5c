#!/usr/bin/env bash
# `keysync doctor` against the kind lab, healthy and then broken on purpose one way at a time
# (each break restored before the next): the synchronizer DaemonSet's nodeSelector matching no
# node, its Role deleted, keyprotect-config with an http:// URL (the lab's mockkp: doctor
# without --allow-http-kp), a public key dropped into a node's keys tree, a symlink in the tree,
# CRI-O's decryption_keys_path pointing elsewhere (a crio.conf.d drop-in). Doctor must be
# clean on the healthy lab and name the exact failure for each break.
#
#   hack/doctor-test.sh [LAB_ENV]    # default _out/cluster.env (NODE_AGENT_IMAGE for the node agent)
#
# The nodes are the kind lab's containers (docker exec). Outputs go to _out/doctor-test/.
# Ends with "N passed, N failed".
#
# Not in CI yet. Its first run on the kind lab, right after the suites, failed 5 of 10 cases
# for three reasons still to fix: doctor's decrypt-failures check reports the suites' own
# expected missing-key Events of Pods that no longer exist as ✗ (they should be warnings, as
# secret-events does for deleted Secrets); the kp-http case needs a keyprotect-config to break
# (the suites remove theirs); and the agent DaemonSet/namespace keysync-doctor was still there
# when the script looked right after doctor exited.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--tags=containers_image_openpgp} CGO_ENABLED=${CGO_ENABLED:-0}
LAB_ENV=$(realpath "${1:-_out/cluster.env}")
[ -f "$LAB_ENV" ] || { echo "no lab env file $LAB_ENV (make lab-up, then make cluster-init as .ci/run does)" >&2; exit 2; }
KUBECONFIG=$(sed -n 's/^KUBECONFIG=//p' "$LAB_ENV")
export KUBECONFIG
NODE=$(sed -n 's/^NODES=//p' "$LAB_ENV" | tr ', ' '\n\n' | grep -v control-plane | head -1)
[ -n "$NODE" ] || NODE=$(sed -n 's/^NODES=//p' "$LAB_ENV" | tr ', ' '\n\n' | head -1)
NS=image-key-synchronizer DS=addon-image-key-synchronizer
OUT=_out/doctor-test
mkdir -p "$OUT" bin
go build -trimpath -o bin/ ./cmd/keysync
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

pass=0 fail=0
# check NAME WANT_CODE WANT_LINE [DOCTOR_ARGS...]: runs doctor, wants its exit code and a line
# of its output containing WANT_LINE (a fixed string).
check() {
  local name=$1 want_code=$2 want=$3 code=0
  shift 3
  bin/keysync doctor --lab-env "$LAB_ENV" --timeout 4m "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err" || code=$?
  if [ "$code" -ne "$want_code" ]; then
    log "FAIL $name: exit $code, want $want_code"; sed 's/^/    /' "$OUT/$name.txt" "$OUT/$name.err" >&2; fail=$((fail + 1)); return
  fi
  if ! grep -qF -- "$want" "$OUT/$name.txt"; then
    log "FAIL $name: no line with: $want"; sed 's/^/    /' "$OUT/$name.txt" >&2; fail=$((fail + 1)); return
  fi
  log "ok   $name: $(grep -F -- "$want" "$OUT/$name.txt" | head -1)"
  pass=$((pass + 1))
}
strip() { sed '/^  resourceVersion:/d;/^  uid:/d;/^  creationTimestamp:/d;/^  generation:/d;/^  managedFields:/,/^  [a-z]/{/^  managedFields:/d;/^  - /d;/^    /d}'; }
rollout() { kubectl -n "$NS" rollout status ds/"$DS" --timeout=3m >/dev/null; }

check healthy 0 "0 failed" --allow-http-kp
cp "$OUT/healthy.txt" "$OUT/healthy-lab.txt"

# 1. nodeSelector matching nothing.
kubectl -n "$NS" patch ds "$DS" --type=merge -p '{"spec":{"template":{"spec":{"nodeSelector":{"keysync.dev/doctor-test":"nowhere"}}}}}' >/dev/null
sleep 10
check ds-nodeselector 1 "no synchronizer pod" --allow-http-kp
kubectl -n "$NS" patch ds "$DS" --type=json -p '[{"op":"remove","path":"/spec/template/spec/nodeSelector/keysync.dev~1doctor-test"}]' >/dev/null
rollout

# 2. Role deleted.
kubectl -n "$NS" get role "$DS" -o yaml | strip >"$OUT/role.yaml"
kubectl -n "$NS" delete role "$DS" >/dev/null
check role-deleted 1 "✗ role: Role $NS/$DS not found" --allow-http-kp
kubectl create -f "$OUT/role.yaml" >/dev/null

# 3. keyprotect-config with an http:// URL (the lab's mockkp), without --allow-http-kp.
check kp-http 1 "✗ kp-config:"
grep -F "✗ kp-config:" "$OUT/kp-http.txt" | grep -q "http://" || { log "FAIL kp-http: the kp-config line does not name the http:// URL"; fail=$((fail + 1)); }

# 4. A public key dropped into a node's keys tree.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | openssl pkey -pubout >"$OUT/pub.pem"
docker cp "$OUT/pub.pem" "$NODE:/etc/crio/keys/doctor-test-pub.pem" >/dev/null
docker exec "$NODE" chmod 0600 /etc/crio/keys/doctor-test-pub.pem
check public-key 1 "node $NODE: doctor-test-pub.pem: CRI-O cannot use it" --allow-http-kp
docker exec "$NODE" rm -f /etc/crio/keys/doctor-test-pub.pem

# 5. A symlink in the tree.
docker exec "$NODE" ln -s /etc/hostname /etc/crio/keys/doctor-test-link
check symlink 1 "node $NODE: doctor-test-link: symbolic link" --allow-http-kp
docker exec "$NODE" rm -f /etc/crio/keys/doctor-test-link

# 6. CRI-O's decryption_keys_path pointing elsewhere (a drop-in; CRI-O is not restarted: doctor
# reads the configuration).
docker exec "$NODE" sh -c 'printf "[crio.runtime]\ndecryption_keys_path = \"/var/lib/doctor-test-keys\"\n" >/etc/crio/crio.conf.d/99-doctor-test.conf'
check crio-keys-path 1 "node $NODE: CRI-O's decryption_keys_path is /var/lib/doctor-test-keys" --allow-http-kp
docker exec "$NODE" rm -f /etc/crio/crio.conf.d/99-doctor-test.conf

check healthy-again 0 "0 failed" --allow-http-kp
left=$(kubectl get all,ns -A -l app.kubernetes.io/managed-by=keysync-suites -o name 2>/dev/null || true)
if [ -n "$left" ]; then log "FAIL doctor left its agent behind: $left"; fail=$((fail + 1)); fi
echo "doctor-test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
