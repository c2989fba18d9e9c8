#!/usr/bin/env bash
# `make install` into a temporary DESTDIR: the files are there, procrefd links nothing from
# the Swift toolchain (ldd), it serves and answers from there, and the systemd unit is valid
# (systemd-analyze verify, where the command exists). Prints "install: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
dest=$(mktemp -d /tmp/prd-install-XXXXXX)
state=$(mktemp -d /tmp/prd-istate-XXXXXX)
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
  rm -rf "$dest" "$state"
}
trap cleanup EXIT
passed=0; failed=0
check() {  # check NAME COMMAND...
  if "${@:2}"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "install: FAILED: $1"; fi
}

if ! make --no-print-directory install DESTDIR="$dest" PREFIX=/usr/local > "$dest.log" 2>&1; then
  tail -n 30 "$dest.log"; rm -f "$dest.log"; echo "install: 0 passed, 1 failed"; exit 1
fi
rm -f "$dest.log"
bin=$dest/usr/local/bin
unit=$dest/usr/local/lib/systemd/system/procrefd.service
check "binaries installed" test -x "$bin/procrefd" -a -x "$bin/procref-holder" -a -x "$bin/procref-logpump" -a -x "$bin/procref-door"
check "unit installed with the install path" grep -q '^ExecStart=/usr/local/bin/procrefd serve' "$unit"
check "completions installed" test -s "$dest/usr/local/share/bash-completion/completions/procrefd" \
  -a -s "$dest/usr/local/share/zsh/site-functions/_procrefd" -a -s "$dest/usr/local/share/fish/vendor_completions.d/procrefd.fish"

# The size the package ships too: stripped, and without Foundation's ICU data (37 MB) linked in.
small() { size=$(stat -c %s "$bin/procrefd"); echo "install: procrefd is $size bytes"; [ "$size" -le 30000000 ]; }
check "installed procrefd is at most 30 MB" small
stripped() { ! readelf -S "$bin/procrefd" | grep -q '\.debug_info'; }
check "installed procrefd is stripped" stripped

toolchain=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")
no_toolchain_libraries() { ! ldd "$bin/procrefd" "$bin/procref-door" | grep -F "$toolchain"; }
check "procrefd and procref-door link nothing under $toolchain" no_toolchain_libraries
check "man pages installed (procrefd(1), one per subcommand, procrefd.toml(5))" test -s "$dest/usr/local/share/man/man1/procrefd.1" \
  -a -s "$dest/usr/local/share/man/man1/procrefd.serve.1" -a -s "$dest/usr/local/share/man/man5/procrefd.toml.5"

# It serves from the install, with no toolchain library path, and its holder is the sibling.
chmod 700 "$state"
env -i PATH=/usr/bin:/bin HOME="$state" "$bin/procrefd" serve --state-dir "$state" --listen 127.0.0.1:0 \
  > "$state/out" 2> "$state/err" &
daemon=$!
ready() { for _ in $(seq 100); do grep -q '"ready":true' "$state/out" 2>/dev/null && return 0; sleep 0.1; done; cat "$state/err"; return 1; }
check "installed procrefd serves" ready
answers() { "$bin/procrefd" services --state-dir "$state" | grep -q NAME; }
check "installed client answers" answers
kill "$daemon"; wait "$daemon"; daemon=""

if command -v systemd-analyze > /dev/null; then
  # verify wants ExecStart's binary to exist: point a copy of the unit into DESTDIR.
  sed "s|/usr/local/bin|$bin|g" "$unit" > "$dest/procrefd.service"
  verify() { systemd-analyze verify "$dest/procrefd.service" 2>&1 | tee "$dest/verify.log" >&2; ! grep -qv '^$' "$dest/verify.log"; }
  check "systemd-analyze verify" verify
fi
echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
