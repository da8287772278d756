#!/usr/bin/env bash
# Install the Debian 12 packages Payraft needs, if any is missing. Idempotent; prints nothing
# when everything is present. Needs root (or sudo) only when something must be installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config   # toolchain
  clang libclang-rt-14-dev                        # libFuzzer targets, sanitizers
  libuv1-dev libraft-dev                          # event loop, consensus
  libmsgpack-dev librocksdb-dev libzstd-dev       # wire format, state, snapshot compression
  libssl-dev libcmocka-dev libjansson-dev         # crypto, tests, payctl's JSON
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: need root to install ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
