#!/usr/bin/env bash
# Kill tests: start conformance runs against a lab through each entry point (go test ./suites,
# make conformance, keysync conformance), stop them at several points (during setup,
# mid-feature, during a feature's cleanup, during the interrupt's own cleanup) with SIGINT to
# the process group (Ctrl-C), SIGTERM (to the group, or to the parent alone), the
# -test.timeout watchdog, or SIGKILL followed by `keysync conformance cleanup`, and show that
# nothing labelled by the suites remains:
#   kubectl get all,secrets,configmaps,leases,ns -A -l app.kubernetes.io/managed-by=keysync-suites
# is empty, and no process of the run is left.
#
#   hack/interrupt-test.sh [LAB_ENV] [CASE...]    # LAB_ENV default _out/cluster.env
#
# The lab: any cluster (NODE_ACCESS=pod: the node agent DaemonSet and its namespace are part of
# what must go), e.g. the kind lab through `make cluster-init` (.ci/run does this). Logs go to
# _out/interrupt-test/. Ends with "N passed, N failed".
set -euo pipefail
# Job control: every run is a background job in a process group of its own (PGID = its PID),
# signalled as a whole like Ctrl-C does, or its first process alone.
set -m
cd "$(dirname "$0")/.."
export GOFLAGS=${GOFLAGS:--tags=containers_image_openpgp} CGO_ENABLED=${CGO_ENABLED:-0}

LAB_ENV=$(realpath "${1:-_out/cluster.env}")
shift || true
[ -f "$LAB_ENV" ] || { echo "no lab env file $LAB_ENV: bring a lab up (make lab-up, make cluster-init ...)" >&2; exit 2; }
KUBECONFIG=$(sed -n 's/^KUBECONFIG=//p' "$LAB_ENV")
export KUBECONFIG
SEL=app.kubernetes.io/managed-by=keysync-suites
NS=$(sed -n 's/^SYNCER_NAMESPACE=//p' "$LAB_ENV"); NS=${NS:-image-key-synchronizer}
# The watchdog case's go test -timeout: shorter than a whole run on the lab (the node lab runs
# every area in ~20s, the kind lab in minutes).
WATCHDOG_TIMEOUT=${WATCHDOG_TIMEOUT:-100s}
OUT=_out/interrupt-test
mkdir -p "$OUT" bin
go build -trimpath -o bin/ ./cmd/keysync
go test -count=1 -c -o "$OUT/suites.test" ./suites >/dev/null # warms the build cache for go test

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
labelled() { kubectl get all,secrets,configmaps,leases,ns -A -l "$SEL" -o name 2>/dev/null || true; }
secrets() { kubectl get secrets -n "$NS" -l "$SEL" -o name 2>/dev/null | wc -l; }
alive() { pgrep -g "$1" >/dev/null 2>&1; }

# wait_point POINT SID LOG: returns once the run reaches POINT (1 if it ended first).
wait_point() {
  local point=$1 sid=$2 log=$3 deadline=$((SECONDS + 600)) seen="" cur
  while [ $SECONDS -lt $deadline ]; do
    alive "$sid" || return 1
    case $point in
      setup) [ -n "$(kubectl get ds -A -l "$SEL" -o name 2>/dev/null)" ] && return 0 ;;
      feature) [ "$(secrets)" -gt 0 ] && return 0 ;;
      # A feature's own cleanup began: a Secret seen a moment ago is gone (kubectl buffers a
      # watch's output in a pipe, so poll).
      cleanup)
        cur=$(kubectl get secrets -n "$NS" -l "$SEL" -o name 2>/dev/null | sort)
        [ -n "$seen" ] && [ -n "$(comm -23 <(echo "$seen") <(echo "$cur"))" ] && return 0
        seen=$(printf '%s\n%s\n' "$seen" "$cur" | sed '/^$/d' | sort -u)
        continue ;;
      # The interrupt's cleanup is under way (after a first signal).
      interrupt-cleanup) grep -q "stopping the run and removing" "$log" 2>/dev/null && return 0 ;;
      timeout) return 0 ;;
    esac
    sleep 0.2
  done
  return 1
}

# start ENTRY LOG: starts a run as a job of its own; sets PID (= its process group ID).
start() {
  local entry=$1 log=$2
  case $entry in
    gotest) KEYSYNC_LAB_ENV=$LAB_ENV go test -count=1 -v -timeout "$TEST_TIMEOUT" -run "$RUN_FILTER" ./suites >"$log" 2>&1 </dev/null & ;;
    make) make conformance LAB_ENV="$LAB_ENV" SUITE_ARGS="-test.run=TestConformance/plain$" >"$log" 2>&1 </dev/null & ;;
    cli) bin/keysync conformance --lab-env "$LAB_ENV" --labels area=plain --run-id "$RUN_ID" >"$log" 2>&1 </dev/null & ;;
  esac
  PID=$!
}

pass=0 fail=0
# kill_case NAME ENTRY POINT HOW [SECOND]: HOW is INT|TERM (the group), TERM-parent (the
# started process alone), KILL (the group, then the cleanup verb) or timeout (go test's
# -timeout watchdog); SECOND, when set, is a second signal sent during the interrupt's cleanup.
kill_case() {
  local name=$1 entry=$2 point=$3 how=$4 second=${5:-} log="$OUT/$1.log" pid left
  rm -f _out/suites.json
  RUN_ID=kt$RANDOM
  log "case $name: $entry, stop at $point with $how${second:+, then $second during cleanup}"
  if [ -n "$(labelled)" ]; then log "  leftovers before the case (removing): $(labelled | tr '\n' ' ')"; bin/keysync conformance cleanup >/dev/null; fi
  # The watchdog case runs every area (longer than its 100s timeout); the others the plain area.
  TEST_TIMEOUT=20m RUN_FILTER='TestConformance/plain$'
  if [ "$how" = timeout ]; then TEST_TIMEOUT=$WATCHDOG_TIMEOUT RUN_FILTER=TestConformance; fi
  start "$entry" "$log"
  pid=$PID
  if ! wait_point "$point" "$pid" "$log"; then
    log "  FAIL: the run ended before reaching $point (see $log)"; fail=$((fail + 1)); return
  fi
  case $how in
    INT | TERM | KILL) kill -"$how" -- -"$pid" 2>/dev/null || true ;;
    TERM-parent) kill -TERM "$pid" 2>/dev/null || true ;;
    timeout) ;;
  esac
  if [ -n "$second" ]; then
    wait_point interrupt-cleanup "$pid" "$log" && kill -"$second" -- -"$pid" 2>/dev/null || true
  fi
  local deadline=$((SECONDS + 300))
  while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.5; done
  if alive "$pid"; then log "  FAIL: processes of the run still alive after 300s: $(pgrep -g "$pid" | tr '\n' ' ')"; fail=$((fail + 1)); return; fi
  if [ "$how" = KILL ]; then
    if [ "$entry" = cli ]; then bin/keysync conformance cleanup --run-id "$RUN_ID" >>"$log" 2>&1; else bin/keysync conformance cleanup >>"$log" 2>&1; fi
  fi
  # Namespaces take a moment to finish terminating. Without --run-id the cleanup verb leaves
  # a run whose Lease is still live alone (a killed run's expires within 60s): repeat it.
  deadline=$((SECONDS + 120))
  while [ -n "$(labelled)" ] && [ $SECONDS -lt $deadline ]; do
    if [ "$how" = KILL ] && [ "$entry" != cli ]; then bin/keysync conformance cleanup >>"$log" 2>&1 || true; fi
    sleep 2
  done
  left=$(labelled)
  if [ -n "$left" ]; then
    log "  FAIL: left behind: $(echo "$left" | tr '\n' ' ') (see $log)"; fail=$((fail + 1))
    bin/keysync conformance cleanup >/dev/null 2>&1 || true
    return
  fi
  # What the run said (go test -json output for make). Only where the reader lives on: go
  # ignores SIGINT and waits for the test binary, but dies of SIGTERM, and then nothing the
  # test binary says (while it cleans up as an orphan) reaches anyone.
  local said=$log want="cleanup done\|interrupted: removed"
  [ "$entry" = make ] && said="$log _out/suites.json"
  [ "$how" = timeout ] && want="the test timeout (-test.timeout [0-9a-z.]*) ends in"
  # shellcheck disable=SC2086
  local check=false
  case $how in INT | timeout) check=true ;; TERM) [ "$entry" = cli ] && check=true ;; esac
  if $check && ! grep -q "$want" $said; then
    log "  FAIL: the run did not say it cleaned up (\"$want\" not in $said)"; fail=$((fail + 1)); return
  fi
  log "  ok: nothing labelled $SEL remains"
  pass=$((pass + 1))
}

ALL="gotest-setup-int gotest-feature-term-parent gotest-timeout gotest-setup-kill make-feature-term make-feature-term-parent
make-cleanup-int cli-feature-int cli-cleanup-term cli-interrupt-cleanup-int-term cli-feature-kill"
for c in ${*:-$ALL}; do
  case $c in
    gotest-setup-int) kill_case "$c" gotest setup INT ;;
    gotest-feature-term-parent) kill_case "$c" gotest feature TERM-parent ;;
    gotest-timeout) kill_case "$c" gotest timeout timeout ;;
    gotest-setup-kill) kill_case "$c" gotest setup KILL ;;
    make-feature-term) kill_case "$c" make feature TERM ;;
    make-feature-term-parent) kill_case "$c" make feature TERM-parent ;;
    make-cleanup-int) kill_case "$c" make cleanup INT ;;
    cli-feature-int) kill_case "$c" cli feature INT ;;
    cli-cleanup-term) kill_case "$c" cli cleanup TERM ;;
    cli-interrupt-cleanup-int-term) kill_case "$c" cli feature INT TERM ;;
    cli-feature-kill) kill_case "$c" cli feature KILL ;;
    *) echo "unknown case $c (cases: $ALL)" >&2; exit 2 ;;
  esac
done
echo "interrupt-test: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
