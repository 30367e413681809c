#!/usr/bin/env bash
# scripts/deps.sh — install what loom needs from Debian 12's packages (only
# what is missing; uses sudo when not root).  Run by demo.sh and test.sh;
# `deps.sh test` adds what only the tests use (a real Slurm and munge, tcpdump,
# scikit-learn for the Python examples).
set -euo pipefail
LOOM_PKGS=(build-essential cmake pkg-config libzmq3-dev libmsgpack-dev libuv1-dev liblmdb-dev
           libjansson-dev libssl-dev clang libclang-rt-14-dev iproute2 python3 procps
           libhttp-parser-dev libopenblas-dev curl python3-numpy libpython3-dev
           python3-cloudpickle python3-pytest)
if [ "${1:-}" = test ]; then
  LOOM_PKGS+=(slurmctld slurmd slurm-client munge python3-cryptography tcpdump python3-sklearn)
fi
missing=()
for p in "${LOOM_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "loom: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
