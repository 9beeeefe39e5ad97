#!/usr/bin/env bash
# The packages as an operator gets them: into a fresh Debian 12 root made
# with debootstrap (cached as a tarball), installed with dpkg -i +
# apt-get -f install; parleyd started in the chroot on loopback with a
# throw-away CA, the packaged parleyctl talking to it; then an upgrade to
# a rebuilt package with a bumped version (store, certificates and a
# changed conffile survive), a remove (state kept), a purge (state gone).
#
#   tests/package/install_check.sh PKGDIR VERSION
#
# Exit 0 passed, 1 failed, 77 skipped (the reason on stderr: not root,
# no debootstrap, no network for a first debootstrap/apt). Every process
# it starts is stopped by its PID. Run by `./dev package --check` and by
# `./dev test` (stage "package").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
pkgdir=${1:?usage: install_check.sh PKGDIR VERSION}
ver=${2:?usage: install_check.sh PKGDIR VERSION}
pkgdir=$(cd "$pkgdir" && pwd)
CACHE=${PARLEY_TEST_CACHE:-/var/cache/parley-test}
BASE=$CACHE/bookworm-minbase.tar.gz
T0=$SECONDS

say() { printf '\033[1m==> install_check: %s\033[0m\n' "$*" >&2; }
skip() { say "SKIP: $*"; exit 77; }
fail() { say "FAILED: $*"; exit 1; }
# A command that ends the script through set -e says which one it was
# (otherwise ./dev's "stage package: FAILED" is all one sees).
trap 'say "FAILED: line $LINENO: $BASH_COMMAND (exit $?)"' ERR

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot, dpkg in the chroot)"
for t in debootstrap chroot unshare; do
  command -v "$t" >/dev/null || skip "no $t (apt-get install debootstrap)"
done
for p in parleyd parley-agent parleyctl; do
  [ -f "$pkgdir/${p}_${ver}_amd64.deb" ] || fail "no $pkgdir/${p}_${ver}_amd64.deb"
done

# In a mount namespace of our own: the /proc mounted into the chroot goes
# away with this script whatever happens.
if [ -z "${PARLEY_INSTALL_CHECK_NS:-}" ]; then
  PARLEY_INSTALL_CHECK_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi

# The same package source as this machine's apt: deb822 .sources (Debian's
# container images) or a one-line sources.list (Debian's installer); either
# may be absent, and a sed on a missing file must not end the script
# (set -e, pipefail).
mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
[ -n "$mirror" ] || mirror=$(sed -n 's/^deb \[*[^]]*\]* *\(http[^ ]*\) bookworm main.*/\1/p; s/^deb \(http[^ ]*\) bookworm main.*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1 || true)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

mkdir -p "$CACHE/archives" "$CACHE/lists"
if [ ! -s "$BASE" ]; then
  say "no cached root: debootstrap --variant=minbase bookworm from $mirror"
  b=$(mktemp -d "$CACHE/.root.XXXXXX")
  if ! debootstrap --variant=minbase bookworm "$b" "$mirror" > "$CACHE/debootstrap.log" 2>&1; then
    rm -rf --one-file-system "$b"
    skip "debootstrap cannot run here: $(tail -1 "$CACHE/debootstrap.log")"
  fi
  chmod 755 "$b" # mktemp's 0700 would become the root's mode
  tar -C "$b" -czf "$BASE.tmp" . && mv "$BASE.tmp" "$BASE"
  rm -rf --one-file-system "$b"
fi

R=$(mktemp -d /tmp/parley-chroot.XXXXXX)
DPID=
# Processes whose root is the chroot: what parleyd started itself (its
# key process) is found this way, by PID.
in_chroot_pids() {
  local d
  for d in /proc/[0-9]*; do
    [ "$(readlink "$d/root" 2>/dev/null)" = "$R" ] && echo "${d#/proc/}"
  done
  return 0
}
stop_daemon() {
  if [ -n "$DPID" ]; then
    kill "$DPID" 2>/dev/null || true
    wait "$DPID" 2>/dev/null || true
    DPID=
  fi
  # Its children must have ended with it; any left is killed by PID and
  # is a failure.
  local left p
  left=$(in_chroot_pids)
  if [ -n "$left" ]; then
    for p in $left; do kill -9 "$p" 2>/dev/null || true; done
    say "processes left in the chroot after parleyd stopped: $left"
    return 1
  fi
}
cleanup() {
  stop_daemon || true
  umount "$R/proc" 2>/dev/null || true
  # Nothing may be mounted below $R before it is deleted.
  if grep -q " $R/" /proc/self/mounts; then
    say "left $R (still mounted)"
  else
    rm -rf --one-file-system "$R"
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

say "fresh Debian 12 root in $R (from $BASE)"
tar -C "$R" -xzf "$BASE"
chmod 755 "$R" # a Debian root's mode (a cache made before said 0700)
mount -t proc proc "$R/proc"
cp /etc/resolv.conf "$R/etc/resolv.conf" 2>/dev/null || true
# Downloads from earlier runs (no bind mounts: nothing outside $R can be
# deleted with it).
cp "$CACHE/archives/"*.deb "$R/var/cache/apt/archives/" 2>/dev/null || true
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

# Package lists: a day-old copy is good enough; else apt-get update.
if [ -n "$(find "$CACHE/lists" -maxdepth 1 -name '*_Packages*' -mtime -1 2>/dev/null)" ]; then
  cp -a "$CACHE/lists/." "$R/var/lib/apt/lists/"
elif in_root apt-get update -qq > "$R/apt-update.log" 2>&1; then
  rm -rf "$CACHE/lists" && mkdir -p "$CACHE/lists"
  cp -a "$R/var/lib/apt/lists/." "$CACHE/lists/"
else
  skip "apt-get update in the chroot failed (no network?): $(tail -1 "$R/apt-update.log")"
fi

mkdir -p "$R/tmp/pkgs"
cp "$pkgdir/parleyd_${ver}_amd64.deb" "$pkgdir/parley-agent_${ver}_amd64.deb" \
   "$pkgdir/parleyctl_${ver}_amd64.deb" "$R/tmp/pkgs/"

say "dpkg -i parleyd parley-agent parleyctl $ver, then apt-get -f install"
in_root dpkg -i /tmp/pkgs/parleyd_${ver}_amd64.deb \
  /tmp/pkgs/parley-agent_${ver}_amd64.deb \
  /tmp/pkgs/parleyctl_${ver}_amd64.deb > "$R/dpkg-i.log" 2>&1 || true
in_root apt-get -f install -y -qq -o Dpkg::Options::=--force-confold \
  > "$R/apt-f.log" 2>&1 || { tail -20 "$R/apt-f.log" >&2; fail "apt-get -f install"; }
cp -n "$R/var/cache/apt/archives/"*.deb "$CACHE/archives/" 2>/dev/null || true
for p in parleyd parley-agent parleyctl; do
  st=$(in_root dpkg-query -W -f='${Status} ${Version}' "$p")
  [ "$st" = "install ok installed $ver" ] || fail "$p: $st"
done

say "parleyd --version: $(in_root parleyd --version)"
in_root parley-agent --version >/dev/null || fail "parley-agent --version"
in_root parleyctl --version >/dev/null || fail "parleyctl --version"
in_root getent passwd parley | grep -q ':/var/lib/parley:/usr/sbin/nologin$' ||
  fail "no system user parley: $(in_root getent passwd parley || true)"
# the user parley-agent's VMs' QEMU runs as (not root, no login)
in_root getent passwd parley-qemu | grep -q ':/nonexistent:/usr/sbin/nologin$' ||
  fail "no system user parley-qemu: $(in_root getent passwd parley-qemu || true)"
[ "$(in_root id -u parley-qemu)" != 0 ] || fail "parley-qemu is uid 0"
# Owners by the chroot's own user database.
owner() { in_root stat -c '%U %a' "$1"; }
[ "$(owner /var/lib/parley)" = "parley 700" ] ||
  fail "/var/lib/parley is $(owner /var/lib/parley)"
[ "$(owner /var/lib/parley-agent)" = "root 700" ] ||
  fail "/var/lib/parley-agent is $(owner /var/lib/parley-agent)"
for f in /etc/parley/parleyd.json /etc/default/parleyd /etc/parley/agent.env; do
  [ -f "$R$f" ] || fail "no $f"
done

# parleyd as the unit runs it: with --user (issue 10's key process) it
# starts as root and drops to parley, its keys root's; a parleyd without
# --user runs as parley with keys of its own. The packaged config, every
# port chosen at run time on 127.0.0.1, logs on stderr.
if in_root parleyd --help | grep -q -- '--user NAME'; then
  asuser=() userflag=(--user parley) mode="root, --user parley"
else
  asuser=(runuser -u parley --) userflag=() mode="user parley"
fi
say "throw-away CA (parley-pki) and parleyd on loopback ($mode)"
in_root "${asuser[@]}" parley-pki ca /var/lib/parley > "$R/pki.log"
in_root "${asuser[@]}" parley-pki issue /var/lib/parley parleyd --server >> "$R/pki.log"

start_daemon() { # LOG
  rm -f "$R/var/lib/parley/parleyd.api-port"
  local spec=parley:parley
  [ ${#userflag[@]} -eq 0 ] || spec=root:root
  chroot --userspec=$spec "$R" env -i PATH=/usr/bin:/bin \
    /usr/bin/parleyd --config /etc/parley/parleyd.json "${userflag[@]}" \
    --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --join-listen 127.0.0.1:0 \
    2> "$1" &
  DPID=$!
  for _ in $(seq 200); do
    [ -s "$R/var/lib/parley/parleyd.api-port" ] && break
    kill -0 "$DPID" 2>/dev/null || { cat "$1" >&2; fail "parleyd exited"; }
    sleep 0.05
  done
  [ -s "$R/var/lib/parley/parleyd.api-port" ] || { cat "$1" >&2; fail "no API port"; }
  API="http://127.0.0.1:$(cat "$R/var/lib/parley/parleyd.api-port")"
  TOKEN=$(cat "$R/var/lib/parley/admin.token")
}
ctl() { in_root parleyctl --server "$API" --token "$TOKEN" "$@"; }
hosts_json() { ctl -o json host list | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)))'; }
has_host() { # JSON NAME
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if any(h.get("name")==sys.argv[2] for h in d["items"]) else 1)' "$1" "$2"
}

start_daemon "$R/parleyd-1.log"
[ "$(ctl health)" != "" ] || fail "parleyctl health said nothing"
ctl health > /dev/null || fail "parleyctl health"
ctl -o json host add h1 | grep -q '"join_token": *"prj_' || fail "host add h1"
j=$(hosts_json) || fail "host list -o json"
has_host "$j" h1 || fail "h1 not in: $j"
say "health ok, host add h1, host list -o json: $j"
# The console's files come with the daemon and are found beside it.
[ -f "$R/usr/share/parley/console/index.html" ] ||
  fail "the console's files are not installed in /usr/share/parley/console"
python3 - "$API/ui/" <<'PY' || fail "the installed parleyd does not serve its console at /ui/"
import sys, urllib.request
r = urllib.request.urlopen(sys.argv[1])
b = r.read().decode()
csp = r.headers.get("Content-Security-Policy", "")
sys.exit(0 if r.status == 200 and "console.js" in b and "script-src 'self'" in csp else 1)
PY
say "the console is served at $API/ui/ from /usr/share/parley/console"
stop_daemon || fail "parleyd left processes behind"

sums() { (cd "$R/var/lib/parley" && sha256sum ca.crt ca.key parleyd.crt parleyd.key policy.key); }
before=$(sums)
echo "# changed by install_check" >> "$R/etc/default/parleyd"

say "upgrade: rebuilt packages with version ${ver}+check1"
up=$(mktemp -d /tmp/parley-pkg-up.XXXXXX)
"$ROOT/dev" package --version-suffix "+check1" --out "$up" > "$up/build.log" 2>&1 ||
  { tail -20 "$up/build.log" >&2; rm -rf "$up"; fail "the upgrade build"; }
nv="${ver}+check1"
cp "$up/parleyd_${nv}_amd64.deb" "$up/parley-agent_${nv}_amd64.deb" \
   "$up/parleyctl_${nv}_amd64.deb" "$R/tmp/pkgs/"
rm -rf "$up"
in_root dpkg -i --force-confold /tmp/pkgs/parleyd_${nv}_amd64.deb \
  /tmp/pkgs/parley-agent_${nv}_amd64.deb /tmp/pkgs/parleyctl_${nv}_amd64.deb \
  > "$R/dpkg-up.log" 2>&1 || { tail -20 "$R/dpkg-up.log" >&2; fail "dpkg -i (upgrade)"; }
for p in parleyd parley-agent parleyctl; do
  st=$(in_root dpkg-query -W -f='${Status} ${Version}' "$p")
  [ "$st" = "install ok installed $nv" ] || fail "$p after upgrade: $st"
done
[ "$(sums)" = "$before" ] || fail "certificates or keys changed by the upgrade"
grep -q '^# changed by install_check$' "$R/etc/default/parleyd" ||
  fail "the changed conffile /etc/default/parleyd was replaced"
start_daemon "$R/parleyd-2.log"
j=$(hosts_json) || fail "host list after upgrade"
has_host "$j" h1 || fail "h1 lost in the upgrade: $j"
say "after the upgrade to $nv: certificates unchanged, h1 still in the store"
stop_daemon || fail "parleyd left processes behind"

say "remove (state kept), then purge (state gone)"
in_root dpkg -r parleyd parley-agent parleyctl > "$R/dpkg-r.log" 2>&1 ||
  { tail -20 "$R/dpkg-r.log" >&2; fail "dpkg -r"; }
[ -f "$R/var/lib/parley/parley.db" ] && [ -f "$R/var/lib/parley/ca.key" ] ||
  fail "dpkg -r deleted the store or the CA"
[ -f "$R/etc/parley/parleyd.json" ] || fail "dpkg -r deleted a conffile"
in_root dpkg -P parleyd parley-agent parleyctl > "$R/dpkg-p.log" 2>&1 ||
  { tail -20 "$R/dpkg-p.log" >&2; fail "dpkg -P"; }
for d in /var/lib/parley /var/lib/parley-agent /etc/parley /etc/default/parleyd; do
  [ ! -e "$R$d" ] || fail "$d is still there after purge"
done
say "passed in $((SECONDS - T0)) s"
