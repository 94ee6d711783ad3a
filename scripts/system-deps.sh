#!/usr/bin/env bash
# Installs the system programs the tests and benchmarks need, when missing.
# Usage: scripts/system-deps.sh [program...]   (default: redis-server)
set -euo pipefail
declare -A package=([redis-server]=redis-server [redis-cli]=redis-tools [nginx]=nginx [haproxy]=haproxy [wrk]=wrk)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(redis-server redis-cli wrk)
missing=()
for prog in "${wanted[@]}"; do
  command -v "$prog" >/dev/null 2>&1 || missing+=("${package[$prog]:-$prog}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing: ${missing[*]} — install with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} from the system packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
