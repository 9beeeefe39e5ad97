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
# --fail-on error: the exit status says whether an error was found;
# the tags, all of them, go to the log.
lintian --fail-on error --display-info --show-overrides "$changes" > "$out" 2>&1 || rc=$?
sed 's/^/   lintian: /' "$out"
errors=$(grep -c '^E: ' "$out" || true)
warnings=$(grep -c '^W: ' "$out" || true)
infos=$(grep -c '^I: ' "$out" || true)
printf '\033[1m==> lintian: %d errors, %d warnings, %d info (%s)\033[0m\n' \
  "$errors" "$warnings" "$infos" "$(basename "$changes")" >&2
if [ "$rc" -ne 0 ] || [ "$errors" -ne 0 ]; then
  echo "lintian_check: FAILED (exit $rc, $errors errors)" >&2
  exit 1
fi
