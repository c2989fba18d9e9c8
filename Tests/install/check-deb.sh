#!/bin/bash
# The Debian package installed into a throwaway root (dpkg --root, maintainer scripts run
# chrootless with DPKG_ROOT): the installed procrefd answers --version and serves with a
# bare environment, the unit is enabled inside that root (never on this host), and a purge
# leaves nothing but dpkg's own database and the system group policy keeps.
#   check-deb.sh PACKAGE.deb
set -u
deb=$(readlink -f "$1")
root=$(mktemp -d /tmp/prd-deb-XXXXXX)
passed=0 failed=0
check() {
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
cleanup() {
  [ -n "${serve:-}" ] && kill "$serve" 2>/dev/null && wait "$serve" 2>/dev/null
  rm -rf "$root"
}
trap cleanup EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
dpkg_root() { dpkg --root="$root" --force-script-chrootless --force-depends --log=/dev/null "$@"; }

check "installed into a throwaway root" dpkg_root -i "$deb"
packaged_size=$(stat -c %s "$root/usr/bin/procrefd")
echo "deb: /usr/bin/procrefd is $packaged_size bytes"
check "the packaged procrefd is at most 30 MB" test "$packaged_size" -le 30000000
check "procrefd --version with a bare environment" test "$(env -i "$root/usr/bin/procrefd" --version)" != ""
serves() {
  env -i PATH=/usr/bin:/bin "$root/usr/bin/procrefd" serve --state-dir "$root/var/lib/procrefd" --port 0 \
    --config "$root/etc/procrefd/procrefd.toml" > "$root/serve.out" 2>&1 &
  serve=$!
  for _ in $(seq 100); do grep -q '"pid"' "$root/serve.out" 2>/dev/null && break; sleep 0.1; done
  grep -q '"pid"' "$root/serve.out" && kill -TERM "$serve" && wait "$serve"
  local rc=$?
  serve=""
  rm -f "$root/serve.out"
  return $rc
}
check "the installed procrefd serves with its packaged config file" serves
check "the conffile is registered" grep -qx /etc/procrefd/procrefd.toml "$root/var/lib/dpkg/info/procrefd.conffiles"
check "the unit is enabled inside the root" test -L "$root/etc/systemd/system/multi-user.target.wants/procrefd.service"
check "the procrefd group was created inside the root" grep -q '^procrefd:' "$root/etc/group"
check "man pages installed" test -s "$root/usr/share/man/man1/procrefd.1.gz" -a -s "$root/usr/share/man/man5/procrefd.toml.5.gz"
check "purged" dpkg_root --purge procrefd
left=$(cd "$root" && find . -mindepth 1 ! -type d ! -path './var/lib/dpkg/*' ! -path './etc/.pwd.lock' ! -path './etc/group*' ! -path './etc/gshadow*' ! -path './etc/passwd*' ! -path './etc/shadow*' | sort)
check "a purge leaves nothing but dpkg's database and the group (left: ${left:-nothing})" test -z "$left"
echo "deb: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
