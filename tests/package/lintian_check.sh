#!/usr/bin/env bash
# lintian on the packages ./dev package built: any error fails; warnings
# and the rest are printed (each is explained in debian/README.source).
#   tests/package/lintian_check.sh build-pkg/parley_VERSION_amd64.changes
set -euo pipefail
changes=${1:?usage: lintian_check.sh FILE.changes}
[ -f "$changes" ] || { echo "lintian_check: no $changes" >&2; exit 1; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
# Every tag goes to the log, overridden ones ("O:", each with its reason
# as "N:") too. The verdict is the count of "E:" lines: with
# --show-overrides lintian also exits 2 for an overridden error, so its
# status counts only as 0 or 2 (1 is lintian itself failing).
lintian --fail-on error --display-info --show-overrides "$changes" > "$out" 2>&1 || rc=$?
sed 's/^/   lintian: /' "$out"
errors=$(grep -c '^E: ' "$out" || true)
warnings=$(grep -c '^W: ' "$out" || true)
infos=$(grep -c '^I: ' "$out" || true)
overridden=$(grep -c '^O: ' "$out" || true)
printf '\033[1m==> lintian: %d errors, %d warnings, %d info, %d overridden (%s)\033[0m\n' \
  "$errors" "$warnings" "$infos" "$overridden" "$(basename "$changes")" >&2
if { [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; } || [ "$errors" -ne 0 ]; then
  echo "lintian_check: FAILED (exit $rc, $errors errors)" >&2
  exit 1
fi
