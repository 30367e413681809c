#!/usr/bin/env bash
# scripts/get_digits.sh — print the path of a plain digits.csv (scikit-learn's
# handwritten digits: 1797 rows, 64 pixels 0..16 then the label 0..9), the
# dataset of examples/dp_train.c.  Fetches it when needed:
#   - from an installed python3-sklearn (/usr/lib/python3/dist-packages/...), or
#   - `apt-get download python3-sklearn` (the .deb only, no dependencies, no
#     root needed) and extract just the one file from it.
# Idempotent: a complete digits.csv already in the cache dir is reused.
#
#   scripts/get_digits.sh [CACHE_DIR]   # default ${XDG_CACHE_HOME:-$HOME/.cache}/loom/data
#
# Prints only the path on stdout; messages go to stderr.  Exits 2 when apt
# cannot download the package (no network or no Debian mirror), 1 on other
# errors.
set -euo pipefail

DIR=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/loom/data}
CSV=$DIR/digits.csv
MEMBER=usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
ROWS=1797

die() { echo "get_digits: $2" >&2; exit "$1"; }

# A complete file: 1797 lines of 65 fields.
complete()
{
    [ -s "$1" ] && [ "$(wc -l <"$1")" -eq "$ROWS" ] &&
        awk -F, 'NF != 65 { exit 1 }' "$1"
}

if complete "$CSV"; then
    echo "$CSV"
    exit 0
fi
mkdir -p "$DIR" || die 1 "cannot make $DIR"
TMP=$(mktemp -d -p "$DIR")   # a private scratch dir next to the cache
trap 'rm -rf "$TMP"' EXIT

if [ -r "/$MEMBER" ]; then
    echo "get_digits: using the installed python3-sklearn (/$MEMBER)" >&2
    gunzip -c "/$MEMBER" >"$TMP/digits.csv"
else
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
        die 1 "need apt-get and dpkg-deb (a Debian or Ubuntu system) to fetch python3-sklearn"
    echo "get_digits: apt-get download python3-sklearn (about 2 MB) into $DIR" >&2
    # apt-get download writes into the current directory; as root it warns that
    # the _apt user cannot write there, harmlessly.
    if ! (cd "$TMP" && apt-get download -q python3-sklearn) >"$TMP/apt.log" 2>&1; then
        sed 's/^/  apt: /' "$TMP/apt.log" >&2
        die 2 "apt-get download python3-sklearn failed: is a Debian mirror reachable (and the package lists fetched: apt-get update)?"
    fi
    DEB=$(ls "$TMP"/python3-sklearn_*.deb 2>/dev/null | head -1)
    [ -n "$DEB" ] || die 1 "apt-get download left no python3-sklearn_*.deb"
    dpkg-deb --fsys-tarfile "$DEB" | tar -x -C "$TMP" "./$MEMBER" ||
        die 1 "$(basename "$DEB") has no $MEMBER"
    gunzip -c "$TMP/$MEMBER" >"$TMP/digits.csv"
fi
complete "$TMP/digits.csv" || die 1 "the extracted digits.csv is not $ROWS rows of 65 fields"
mv -f "$TMP/digits.csv" "$CSV"     # atomic: a concurrent run sees all or nothing
echo "$CSV"
