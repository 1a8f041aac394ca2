#!/usr/bin/env bash
# Create (once) and print the path of the project's virtualenv.
# The venv lives outside the clone, keyed by the hash of the lock files, so every clone,
# `make` and CI reuse it; a change of the locks builds a new one.
# RADSTREAM_ML=1 adds the [ml] extra (transformers/torch) from requirements-ml.lock.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${RADSTREAM_CACHE:-$HOME/.cache/radstream}
locks=("$here/requirements.lock")
if [ "${RADSTREAM_ML:-0}" = "1" ] && [ -f "$here/requirements-ml.lock" ]; then locks+=("$here/requirements-ml.lock"); fi
key=$(cat "${locks[@]}" | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
mkdir -p "$cache"
# one build at a time: a second caller (another clone's `make`, a parallel job) waits for the first
# instead of removing the venv it is building
exec 9>"$cache/.lock-$key"
flock 9
if [ ! -f "$venv/.complete" ]; then
  echo "radstream: building venv $venv (once per lock change)" >&2
  rm -rf "$venv"
  mkdir -p "$cache"
  python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  for l in "${locks[@]}"; do "$venv/bin/pip" install -q --no-deps -r "$l" >&2; done
  "$venv/bin/pip" check >&2 || true
  touch "$venv/.complete"
fi
echo "$venv"
