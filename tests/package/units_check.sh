#!/usr/bin/env bash
# The packaged systemd units: `systemd-analyze verify` clean (man pages
# found among the packaged ones), and `systemd-analyze security
# --offline=true` exposure at most what dist/README.md records (so a
# hardening line lost shows). Offline: no running systemd needed.
#   tests/package/units_check.sh PKGDIR VERSION
set -euo pipefail
pkgdir=${1:?usage: units_check.sh PKGDIR VERSION}
ver=${2:?usage: units_check.sh PKGDIR VERSION}
say() { printf '\033[1m==> units_check: %s\033[0m\n' "$*" >&2; }
command -v systemd-analyze >/dev/null || { say "SKIP: no systemd-analyze"; exit 77; }
t=$(mktemp -d /tmp/parley-units.XXXXXX)
trap 'rm -rf "$t"' EXIT
for p in parleyd parley-agent; do
  dpkg-deb -x "$pkgdir/${p}_${ver}_amd64.deb" "$t"
done
# verify wants each ExecStart to exist: point the copies at the unpacked
# binaries (the units themselves name /usr/bin).
mkdir "$t/units"
for u in parleyd parley-agent; do
  sed "s#/usr/bin/#$t/usr/bin/#g" "$t/lib/systemd/system/$u.service" > "$t/units/$u.service"
done
out=$(MANPATH=$t/usr/share/man systemd-analyze verify "$t/units/parleyd.service" \
  "$t/units/parley-agent.service" 2>&1) || { echo "$out" >&2; say "FAILED: verify"; exit 1; }
[ -z "$out" ] || { echo "$out" >&2; say "FAILED: verify printed warnings"; exit 1; }
rc=0
# Exposure ceilings: the figures in dist/README.md.
for pair in parleyd:2.3 parley-agent:3.6; do
  u=${pair%%:*} max=${pair#*:}
  e=$(systemd-analyze security --offline=true --no-pager \
      "$t/lib/systemd/system/$u.service" 2>/dev/null |
      sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  say "$u.service: verify clean, exposure $e (ceiling $max)"
  awk -v e="$e" -v m="$max" 'BEGIN { exit !(e != "" && e + 0 <= m + 0) }' || rc=1
done
[ "$rc" = 0 ] || say "FAILED: an exposure above its ceiling"
exit $rc
