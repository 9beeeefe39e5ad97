#!/usr/bin/env bash
# parley-guest-dev as someone outside the tree uses it: unpack it, build
# the packaged hello.c with find_package(ParleyGuest) and
# parley_partition(), and run the image with the packaged parley-agent
# (process backend: no KVM needed) - it must say hello and exit 0.
#   tests/package/sdk_check.sh PKGDIR VERSION
set -euo pipefail
pkgdir=${1:?usage: sdk_check.sh PKGDIR VERSION}
ver=${2:?usage: sdk_check.sh PKGDIR VERSION}
say() { printf '\033[1m==> sdk_check: %s\033[0m\n' "$*" >&2; }
t=$(mktemp -d /tmp/parley-sdk.XXXXXX)
trap 'rm -rf "$t"' EXIT
dpkg-deb -x "$pkgdir/parley-guest-dev_${ver}_amd64.deb" "$t/root"
dpkg-deb -x "$pkgdir/parley-agent_${ver}_amd64.deb" "$t/root"
ex=$t/root/usr/share/doc/parley-guest-dev/examples
mkdir -p "$t/src"
cp "$ex/hello.c" "$ex/hello.json" "$ex/motd.txt" "$ex/app.conf" "$t/src/"
cat > "$t/src/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.20)
project(hello C)
find_package(ParleyGuest 0.4 REQUIRED)
parley_partition(hello hello.c)
CM
cmake -S "$t/src" -B "$t/build" -DCMAKE_PREFIX_PATH="$t/root/usr" > "$t/cmake.log" 2>&1 &&
  cmake --build "$t/build" >> "$t/cmake.log" 2>&1 ||
  { cat "$t/cmake.log" >&2; say "FAILED: building hello with the SDK"; exit 1; }
cp "$t/build/hello.elf" "$t/src/"
if ! "$t/root/usr/bin/parley-agent" run --backend process "$t/src/hello.json" \
    > "$t/run.log" 2>&1; then
  cat "$t/run.log" >&2
  say "FAILED: the packaged agent did not run the SDK-built hello"
  exit 1
fi
grep -q 'hello| hello, world' "$t/run.log" ||
  { cat "$t/run.log" >&2; say "FAILED: no greeting"; exit 1; }
say "hello.elf built with the packaged SDK ran on the packaged agent: $(grep -m1 'hello| hello' "$t/run.log")"
