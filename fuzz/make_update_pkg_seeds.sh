#!/bin/sh
# Seeds for fuzz_update_pkg, made with the tools an operator uses:
# parley-pki release-key and parley-pkg build|sign. BIN is the directory
# holding them (default build/bin). Rewrites fuzz/seeds/update_pkg.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/build/bin}
OUT=$ROOT/fuzz/seeds/update_pkg
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$OUT"
"$BIN/parley-pki" release-key "$T/keys" >/dev/null
printf 'new agent\n' > "$T/parley-agent"
printf 'new vmm\n' > "$T/parley-vmm"
printf 'sdk\n' > "$T/sdk.txt"
"$BIN/parley-pkg" build --version 9.0.0 --replaces-min 0.1.0 \
  -o "$T/u.pkg" "$T/parley-agent" "$T/parley-vmm" "$T/sdk.txt" >/dev/null
cp "$T/u.pkg" "$OUT/unsigned"
"$BIN/parley-pkg" sign --key "$T/keys/release.key" "$T/u.pkg" >/dev/null
cp "$T/u.pkg" "$OUT/signed"
size=$(stat -c %s "$T/u.pkg")
head -c $((size - 3)) "$T/u.pkg" > "$OUT/truncated"
head -c 100 "$T/u.pkg" > "$OUT/truncated-manifest"
# The manifest alone (its length is bytes 12..15, little-endian).
mlen=$(od -An -tu4 -j12 -N4 "$T/u.pkg" | tr -d ' ')
tail -c +81 "$T/u.pkg" | head -c "$mlen" > "$OUT/manifest"
# The last file's last byte changed: a hash mismatch.
{ head -c $((size - 1)) "$T/u.pkg"; printf 'X'; } > "$OUT/hash-mismatch"
{ printf 'PARLEYPX'; tail -c +9 "$T/u.pkg"; } > "$OUT/bad-magic"
"$BIN/parley-pkg" build --version 9.0.0 --replaces-min 0.1.0 \
  --abi-min 2.0 --abi-max 2.1 -o "$T/abi.pkg" "$T/parley-agent" \
  "$T/parley-vmm" >/dev/null
cp "$T/abi.pkg" "$OUT/other-abi"
ls "$OUT"
