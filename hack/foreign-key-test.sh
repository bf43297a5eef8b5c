#!/usr/bin/env bash
# The foreign-key test (issue 12): no byte of a key the run did not create leaves a node.
#
#   hack/foreign-key-test.sh plant LAB_ENV          # before a conformance run
#   hack/foreign-key-test.sh check LAB_ENV PATH...  # after it: scan PATHs, remove the key
#
# plant generates a fresh RSA-2048 key (a valid PKCS#8 key, so CRI-O keeps reading the tree)
# and puts it on every node of LAB_ENV (NODES) as KEYS_ROOT/foreign-<random>.pem, mode 0600:
# outside the synchronizer's SYNC_SUBDIR, where a customer's own keys live. check verifies the
# key is still on every node, unchanged (a run never touches a foreign file), scans PATHs (the
# run's _out/: JUnit, HTML report, go test output and diagnostics; the run's TMPDIR; its log)
# for any 16-byte run of the key as PEM base64, raw DER, hex or base64 of the PEM
# (hack/leakscan), names every file that holds one, and removes the key from the nodes and
# this host whatever the outcome. Ends with "foreign-key: PASS|FAIL ...".
#
# Nodes are reached as the labs reach them: the node lab's node is this host (NODE_ACCESS=host,
# KEYS_ROOT a host path); nodes that are docker containers named like the Kubernetes nodes (the
# kind lab, also when run as any cluster) through docker exec. The key is kept in
# _out/foreign-key/ (skipped by the scan) between the two steps.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--tags=containers_image_openpgp} CGO_ENABLED=${CGO_ENABLED:-0}

op=${1:?usage: $0 plant|check LAB_ENV [PATH...]}
LAB_ENV=${2:?usage: $0 plant|check LAB_ENV [PATH...]}
shift 2
[ -f "$LAB_ENV" ] || { echo "foreign-key: no lab env file $LAB_ENV" >&2; exit 2; }
envv() { sed -n "s/^$1=//p" "$LAB_ENV"; }
ACCESS=$(envv NODE_ACCESS)
ROOT=$(envv KEYS_ROOT); ROOT=${ROOT:-/etc/crio/keys}
IFS=, read -r -a NODES <<<"$(envv NODES)"
STATE=_out/foreign-key
KEY=$STATE/key.pem

# on NODE CMD...: runs a shell command on the node (args after the command are $1...).
on() {
  local node=$1; shift
  if [ "$ACCESS" = host ]; then sh -c "$@"; else docker exec -i "$node" sh -c "$@"; fi
}
reachable() {
  [ "$ACCESS" = host ] && return 0
  [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]
}

case $op in
plant)
  [ ${#NODES[@]} -gt 0 ] || { echo "foreign-key: $LAB_ENV lists no NODES" >&2; exit 2; }
  for n in "${NODES[@]}"; do
    reachable "$n" || { echo "foreign-key: node $n is neither this host nor a running docker container: plant the key yourself" >&2; exit 2; }
  done
  rm -rf "$STATE"
  mkdir -p -m 700 "$STATE"
  go run ./hack/leakscan gen --out "$KEY"
  name=foreign-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n').pem
  echo "$name" >"$STATE/name"
  for n in "${NODES[@]}"; do
    # shellcheck disable=SC2016
    on "$n" 'test -d "$1" && umask 077 && cat >"$1/$2" && chmod 0600 "$1/$2"' _ "$ROOT" "$name" <"$KEY"
  done
  echo "foreign-key: planted $ROOT/$name (RSA-2048, 0600) on ${NODES[*]}"
  ;;
check)
  [ $# -gt 0 ] || { echo "usage: $0 check LAB_ENV PATH..." >&2; exit 2; }
  [ -f "$KEY" ] || { echo "foreign-key: nothing planted ($KEY missing): run plant first" >&2; exit 2; }
  name=$(cat "$STATE/name")
  want=$(sha256sum <"$KEY" | cut -d' ' -f1)
  remove() {
    for n in "${NODES[@]}"; do
      # shellcheck disable=SC2016
      on "$n" 'rm -f "$1/$2"' _ "$ROOT" "$name" </dev/null || echo "foreign-key: failed to remove $ROOT/$name from $n" >&2
    done
    rm -rf "$STATE"
  }
  trap remove EXIT
  fail=0
  for n in "${NODES[@]}"; do
    # shellcheck disable=SC2016
    got=$(on "$n" 'sha256sum "$1/$2" 2>/dev/null' _ "$ROOT" "$name" </dev/null | cut -d' ' -f1) || true
    if [ "$got" != "$want" ]; then
      echo "foreign-key: FAIL: $ROOT/$name on $n was removed or changed during the run (a run must never touch a foreign file)"
      fail=1
    fi
  done
  skips=(--skip "$STATE")
  # With host access the node's keys tree is on this host (the node lab's, under _out): it is
  # the node's, where the key was planted, not something the run wrote.
  [ "$ACCESS" = host ] && skips+=(--skip "$ROOT")
  if ! go run ./hack/leakscan scan --key "$KEY" "${skips[@]}" "$@"; then
    fail=1
  fi
  if [ $fail -ne 0 ]; then
    echo "foreign-key: FAIL (planted $ROOT/$name on ${NODES[*]})"
    exit 1
  fi
  echo "foreign-key: PASS: the planted key stayed on ${#NODES[@]} node(s) untouched, and none of its bytes reached $*"
  ;;
*)
  echo "usage: $0 plant|check LAB_ENV [PATH...]" >&2
  exit 2
  ;;
esac
