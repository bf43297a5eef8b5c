#!/usr/bin/env bash
# Installs the Debian packages listed in hack/packages.txt that are missing. Idempotent; needs
# root (or sudo) on Debian. Uses the machine's own apt sources.
. "$(dirname "$0")/lib.sh"

mapfile -t want < <(sed -e 's/#.*//' -e '/^\s*$/d' "$KEYSYNC_ROOT/hack/packages.txt" | awk '{print $1}')
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
log "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
