#!/usr/bin/env bash
# `keysync doctor` against the kind lab, healthy and then broken on purpose one way at a time
# (each break restored before the next): the synchronizer DaemonSet's nodeSelector matching no
# node, its Role deleted, keyprotect-config with an http:// URL (the lab's mockkp: doctor
# without --allow-http-kp), a public key dropped into a node's keys tree, a symlink in the tree,
# CRI-O's decryption_keys_path pointing elsewhere (a crio.conf.d drop-in). Doctor must be
# clean on the healthy lab and name the exact failure for each break, and after every run its
# node agent (namespace keysync-doctor, objects labelled managed-by=keysync-suites with a
# doctor-HHMMSS run ID) must already be gone.
#
#   hack/doctor-test.sh [LAB_ENV]    # default _out/cluster.env (NODE_AGENT_IMAGE for the node agent)
#
# Meant for the kind lab as any cluster right after the conformance runs (.ci/run runs it after
# the interrupt tests): the suites' own expected missing-key pull failures are then in the
# Events, of pods since deleted (doctor warns), and no keyprotect-config is left (the suites
# remove theirs): for the kp-http case the script creates one from the lab env file's
# MOCKKP_CLUSTER_URL and KP_* values, only if none exists, and removes it again (an existing one
# is never changed). Every break is also undone on exit, whatever happens.
#
# The nodes are the kind lab's containers (docker exec). Outputs go to _out/doctor-test/ (one
# NAME.txt and NAME.err per doctor run). Ends with "doctor-test: N passed, N failed in Ts".
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
rm -f "$OUT"/*.txt "$OUT"/*.err "$OUT/role.yaml"
go build -trimpath -o bin/ ./cmd/keysync
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
env_value() { sed -n "s/^$1=//p" "$LAB_ENV"; }
start=$(date +%s)

# Undo every break (idempotent): on exit, whatever happens.
KPCFG_CREATED=""
restore() {
  set +e
  kubectl -n "$NS" patch ds "$DS" --type=json -p '[{"op":"remove","path":"/spec/template/spec/nodeSelector/keysync.dev~1doctor-test"}]' >/dev/null 2>&1
  if [ -s "$OUT/role.yaml" ] && ! kubectl -n "$NS" get role "$DS" >/dev/null 2>&1; then kubectl create -f "$OUT/role.yaml" >/dev/null; fi
  if [ -n "$KPCFG_CREATED" ]; then kubectl -n "$NS" delete secret keyprotect-config --ignore-not-found >/dev/null; KPCFG_CREATED=""; fi
  docker exec "$NODE" rm -f /etc/crio/keys/doctor-test-pub.pem /etc/crio/keys/doctor-test-link /etc/crio/crio.conf.d/99-doctor-test.conf
}
trap restore EXIT

# agent_left prints what is left of doctor's node agent: its namespace, and anything labelled
# managed-by=keysync-suites whose run ID is a doctor run's (doctor-HHMMSS).
agent_left() {
  kubectl get ns keysync-doctor -o name 2>/dev/null || true
  kubectl get all,ns -A -l app.kubernetes.io/managed-by=keysync-suites \
    -o jsonpath='{range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name} {.metadata.labels.keysync\.dev/run-id}{"\n"}{end}' 2>/dev/null |
    awk '$2 ~ /^doctor-[0-9]+$/ {print $1}' || true
}

pass=0 fail=0
# check NAME WANT_CODE WANT_LINE [DOCTOR_ARGS...]: runs doctor, wants its node agent gone when
# it exits, its exit code, and a line of its output containing WANT_LINE (a fixed string).
check() {
  local name=$1 want_code=$2 want=$3 code=0 t0 left
  shift 3
  t0=$(date +%s)
  bin/keysync doctor --lab-env "$LAB_ENV" --timeout 4m "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err" || code=$?
  left=$(agent_left)
  if [ -n "$left" ]; then
    log "FAIL $name: doctor exited (code $code), its node agent is still there: $(echo $left)"
    sed 's/^/    /' "$OUT/$name.err" >&2; fail=$((fail + 1)); return
  fi
  if [ "$code" -ne "$want_code" ]; then
    log "FAIL $name: exit $code, want $want_code"; sed 's/^/    /' "$OUT/$name.txt" "$OUT/$name.err" >&2; fail=$((fail + 1)); return
  fi
  if ! grep -qF -- "$want" "$OUT/$name.txt"; then
    log "FAIL $name: no line with: $want"; sed 's/^/    /' "$OUT/$name.txt" >&2; fail=$((fail + 1)); return
  fi
  log "ok   $name ($(($(date +%s) - t0))s): $(grep -F -- "$want" "$OUT/$name.txt" | head -1)"
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

# 3. keyprotect-config with an http:// URL (the lab's mockkp), without --allow-http-kp. The
# suites remove theirs: create one for the lab's mockkp unless one exists (never changed), and
# remove it again. The API key goes from the env file to the API server through a file of this
# run only (mode 0600), never through a command line or the output.
if ! kubectl -n "$NS" get secret keyprotect-config >/dev/null 2>&1; then
  url=$(env_value MOCKKP_CLUSTER_URL)
  [ -n "$url" ] && [ -n "$(env_value KP_INSTANCE_ID)" ] && [ -n "$(env_value KP_APIKEY)" ] ||
    { log "FAIL kp-http: $LAB_ENV lacks MOCKKP_CLUSTER_URL, KP_INSTANCE_ID or KP_APIKEY for a keyprotect-config"; exit 1; }
  cfg=$(mktemp -d)/config.json
  (umask 077; export URL="$url" ID="$(env_value KP_INSTANCE_ID)" KEY="$(env_value KP_APIKEY)" TOKEN="$(env_value MOCKKP_CLUSTER_TOKEN_URL)"
    jq -n '{"keyprotect-url": env.URL, "instance-id": env.ID, "apikey": env.KEY} + (if env.TOKEN != "" then {"token-url": env.TOKEN} else {} end)' >"$cfg")
  KPCFG_CREATED=1
  kubectl -n "$NS" create secret generic keyprotect-config --from-file=config.json="$cfg" --dry-run=client -o json |
    kubectl label --local -f - -o json app.kubernetes.io/managed-by=keysync-suites keysync.dev/run-id=doctor-test-script |
    kubectl create -f - >/dev/null
  rm -rf "$(dirname "$cfg")"
  log "created keyprotect-config for $url (removed after the kp-http case)"
fi
check kp-http 1 "✗ kp-config:"
grep -F "✗ kp-config:" "$OUT/kp-http.txt" | grep -q "http://" || { log "FAIL kp-http: the kp-config line does not name the http:// URL"; fail=$((fail + 1)); }
if [ -n "$KPCFG_CREATED" ]; then kubectl -n "$NS" delete secret keyprotect-config >/dev/null; KPCFG_CREATED=""; fi

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
echo "doctor-test: $pass passed, $fail failed in $(($(date +%s) - start))s"
[ "$fail" -eq 0 ]
