#!/bin/sh
# Builds procrefd_VERSION_amd64.deb from release binaries, with dpkg-deb (no debian/ tree):
#   build-deb.sh RELEASE_DIR MAN_DIR OUTPUT_DIR
# Binaries stripped; the unit at /lib/systemd/system, enabled on install; a commented
# /etc/procrefd/procrefd.toml as a conffile; the procrefd group by sysusers.d; man pages,
# completions, README and copyright under /usr/share.
set -eu
release=$(cd "$1" && pwd) man=$(cd "$2" && pwd) out=$(mkdir -p "$3" && cd "$3" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
version=$("$release/procrefd" --version)
arch=$(dpkg --print-architecture)
stage="$out/procrefd_${version}_$arch"
rm -rf "$stage" && mkdir -p "$stage/DEBIAN"
cd "$stage"

install -d usr/bin lib/systemd/system etc/procrefd usr/lib/sysusers.d usr/share/man/man1 usr/share/man/man5 \
  usr/share/doc/procrefd usr/share/bash-completion/completions usr/share/zsh/vendor-completions usr/share/fish/vendor_completions.d
for binary in procrefd procref-holder procref-logpump procref-door; do
  install -m 755 "$release/$binary" usr/bin/
  strip --strip-unneeded --remove-section=.comment --remove-section=.note usr/bin/$binary
  # The toolchain's library path: the Swift runtime is linked in, nothing is looked up there.
  if patchelf --print-rpath usr/bin/$binary 2>/dev/null | grep -q .; then patchelf --remove-rpath usr/bin/$binary; fi
done
sed -e 's|@BINDIR@|/usr/bin|g' \
    -e 's|^ExecStart=/usr/bin/procrefd serve --state-dir /var/lib/procrefd$|ExecStart=/usr/bin/procrefd serve --state-dir /var/lib/procrefd --config /etc/procrefd/procrefd.toml|' \
    -e 's|^# SIGHUP reloads the config file.*|# SIGHUP reloads /etc/procrefd/procrefd.toml.|' \
    "$root/dist/procrefd.service" > lib/systemd/system/procrefd.service
chmod 644 lib/systemd/system/procrefd.service
install -m 644 "$here/procrefd.toml" etc/procrefd/procrefd.toml
install -m 644 "$here/sysusers.conf" usr/lib/sysusers.d/procrefd.conf
for page in "$man"/*.1; do gzip -9n < "$page" > usr/share/man/man1/$(basename "$page").gz; done
gzip -9n < "$root/man/procrefd.toml.5" > usr/share/man/man5/procrefd.toml.5.gz
# The helpers procrefd starts itself get a page each that says so.
for helper in procref-holder procref-logpump procref-door; do
  printf '.TH %s 1 "" procrefd\n.SH NAME\n%s \\- helper process of procrefd\n.SH DESCRIPTION\nprocrefd starts %s itself; it is not run by hand.\nSee\n.BR procrefd (1).\n' \
    "$(echo $helper | tr a-z A-Z)" "$helper" "$helper" | gzip -9n > usr/share/man/man1/$helper.1.gz
done
chmod 644 usr/share/man/man*/*.gz
"$release/procrefd" --generate-completion-script bash | sed '1{/^#!/d}' > usr/share/bash-completion/completions/procrefd
"$release/procrefd" --generate-completion-script zsh > usr/share/zsh/vendor-completions/_procrefd
"$release/procrefd" --generate-completion-script fish > usr/share/fish/vendor_completions.d/procrefd.fish
install -m 644 "$here/copyright" usr/share/doc/procrefd/copyright
install -d usr/share/lintian/overrides
install -m 644 "$here/lintian-overrides" usr/share/lintian/overrides/procrefd
gzip -9n < "$root/README.md" > usr/share/doc/procrefd/README.md.gz
gzip -9n < "$here/changelog" > usr/share/doc/procrefd/changelog.gz
chmod 644 usr/share/doc/procrefd/* usr/share/bash-completion/completions/procrefd usr/share/zsh/vendor-completions/_procrefd \
  usr/share/fish/vendor_completions.d/procrefd.fish

# What the binaries link themselves (NEEDED, not what those pull in), as Debian packages.
needed=$(for binary in usr/bin/*; do objdump -p "$binary" | awk '/NEEDED/ {print $2}'; done | sort -u)
depends=$(for library in $needed; do
    path=$(ldconfig -p | awk -v lib="$library" '$1 == lib && /x86-64/ {print $NF; exit}')
    [ -n "$path" ] || continue
    dpkg -S "$path" 2>/dev/null || dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "/usr$path" 2>/dev/null
  done | cut -d: -f1 | sort -u | while read -r package; do
    [ -n "$package" ] && echo "$package (>= $(dpkg-query -W -f='${Version}' "$package" | sed 's/-[^-]*$//'))"
  done | paste -sd, - | sed 's/,/, /g')
[ -n "$depends" ] || { echo "build-deb: found no libraries the binaries need" >&2; exit 1; }
size=$(du -sk --exclude=DEBIAN . | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" -e "s/@SIZE@/$size/" "$here/control" > DEBIAN/control
echo /etc/procrefd/procrefd.toml > DEBIAN/conffiles
for script in postinst prerm postrm; do install -m 755 "$here/$script" DEBIAN/; done
find . -type d -exec chmod 755 {} +
(find . -type f ! -path './DEBIAN/*' -printf '%P\n' | sort | xargs md5sum) > DEBIAN/md5sums
chmod 644 DEBIAN/control DEBIAN/conffiles DEBIAN/md5sums
cd "$out"
fakeroot dpkg-deb --build --root-owner-group -Zxz "$stage" "procrefd_${version}_$arch.deb" >/dev/null
echo "$out/procrefd_${version}_$arch.deb"
