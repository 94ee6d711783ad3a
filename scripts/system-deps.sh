#!/usr/bin/env bash
# Installs the system programs the tests and benchmarks need, when missing.
# Usage: scripts/system-deps.sh [program...]   (default: redis-server redis-cli wrk promtool)
# promtool (Debian's `prometheus` package) checks and unit-tests manifests/monitoring's alert rules.
# Quiet and idempotent: nothing happens when every program is already on PATH.
set -euo pipefail
declare -A package=([redis-server]=redis-server [redis-cli]=redis-tools [nginx]=nginx [haproxy]=haproxy
                    [wrk]=wrk [promtool]=prometheus [h2load]=nghttp2-client)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(redis-server redis-cli wrk promtool)
missing=()
for prog in "${wanted[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("${package[$prog]:-$prog}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${missing[*]} — install with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} from the system packages" >&2
export DEBIAN_FRONTEND=noninteractive
# Only the programs are wanted: no recommended extras (prometheus recommends the node exporter), and
# no service started by the packages' scripts (a Prometheus server would stay listening on :9090),
# unless the machine already has its own policy for that.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
