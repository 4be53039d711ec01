#!/usr/bin/env bash
# Installs wrk and haproxy from Debian's packages when they are missing and apt-get is usable.
# Best effort: without wrk the bench uses its Python load generator, without haproxy it skips
# the HAProxy runs; both say so in the output.
set -u
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || missing+=(haproxy)
((${#missing[@]})) || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "bench: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || echo "bench: could not install ${missing[*]}; continuing without" >&2
  # Debian starts the packaged haproxy; the bench runs its own on loopback.
  if command -v service >/dev/null && service haproxy status >/dev/null 2>&1; then
    service haproxy stop >/dev/null 2>&1 || true
  fi
else
  echo "bench: ${missing[*]} not installed (needs root and apt-get); continuing without" >&2
fi
exit 0
