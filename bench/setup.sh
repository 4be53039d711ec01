#!/usr/bin/env bash
# The bench needs wrk (every figure) and haproxy (the reads through it and the soak). Installs
# whichever is missing from Debian's packages when run as root; fails, naming them, otherwise.
set -eu
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || missing+=(haproxy)
((${#missing[@]})) || exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "bench: ${missing[*]} not installed; install them (Debian: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "bench: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged haproxy; the bench runs its own on loopback.
if command -v service >/dev/null && service haproxy status >/dev/null 2>&1; then
  service haproxy stop >/dev/null 2>&1 || true
fi
