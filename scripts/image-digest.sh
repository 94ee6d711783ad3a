#!/usr/bin/env bash
# Prints the Containerfile's base image line pinned to the digest its tag points at now
# (`ARG BASE=name:tag@sha256:...`); with --write, also writes that line into the Containerfile.
# The digest is the registry's index (all platforms), as `FROM name:tag@digest` wants it.
# Needs the network and one of crane, skopeo or docker buildx. Usage: scripts/image-digest.sh [--write]
set -euo pipefail
containerfile=${CONTAINERFILE:-"$(dirname "$0")/../Containerfile"}
base=$(sed -n 's/^ARG BASE=//p' "$containerfile" | head -n 1)
[ -n "$base" ] || { echo "image-digest: no 'ARG BASE=' line in $containerfile" >&2; exit 1; }
ref=${base%@*}   # the tag, without a digest pinned earlier

if command -v crane >/dev/null 2>&1; then
  digest=$(crane digest "$ref")
elif command -v skopeo >/dev/null 2>&1; then
  digest=sha256:$(skopeo inspect --raw "docker://$ref" | sha256sum | cut -d ' ' -f 1)
elif command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
  digest=$(docker buildx imagetools inspect "$ref" --format '{{.Manifest.Digest}}')
else
  echo "image-digest: needs crane, skopeo or docker buildx to ask the registry for $ref" >&2
  exit 1
fi
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "image-digest: unexpected digest '$digest' for $ref" >&2; exit 1; }

line="ARG BASE=$ref@$digest"
echo "$line"
if [ "${1:-}" = --write ]; then
  tmp=$(mktemp "$containerfile.XXXXXX")
  awk -v line="$line" 'done == 0 && /^ARG BASE=/ {print line; done = 1; next} {print}' "$containerfile" >"$tmp"
  cat "$tmp" >"$containerfile" && rm -f "$tmp"   # keeps the file's mode
fi
