#!/usr/bin/env bash
# tests/serve_digits.sh — the digits example end to end: fetch scikit-learn's
# digits (scripts/get_digits.sh: the cache, an installed python3-sklearn, or
# `apt-get download`), train the MLP, write model.safetensors, and check its
# accuracy on the held-out rows through serve/mlp.c, at least 0.95 both at
# train time and from the written file.  Exits 77 (ctest: skipped) when the
# dataset cannot be had here (no Debian mirror and nothing cached).
#
#   tests/serve_digits.sh DIGITS_MLP_BINARY SOURCE_DIR
set -euo pipefail
bin=$1
src=$2
min=0.95
rc=0
csv=$(bash "$src/scripts/get_digits.sh") || rc=$?
if [ "$rc" = 2 ]; then
    echo "SKIP: the digits dataset is not cached and apt cannot download python3-sklearn" >&2
    exit 77
elif [ "$rc" != 0 ]; then
    echo "scripts/get_digits.sh failed ($rc)" >&2
    exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" train --data "$csv" --out "$tmp/model.safetensors" --min-accuracy "$min"
"$bin" eval --model "$tmp/model.safetensors" --data "$(dirname "$csv")" --min-accuracy "$min"
# the artifact says where it came from
grep -a -q '"dataset":"sklearn digits (python3-sklearn)"' "$tmp/model.safetensors"
echo "serve_digits: ok"
