#!/usr/bin/env bash
# CI: the Debian package as an administrator gets it. Builds it (deploy/package.sh), checks its
# contents, lints it (lintian: any error fails), rates both units (systemd-analyze security:
# 3.0 or better), installs, upgrades and purges it with apt, and checks that purge leaves no
# user, group or generated file behind. Needs root (apt, adduser) and installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
fail() {
  echo "ci-package: FAILED: $*" >&2
  exit 1
}
step() {
  echo "== ci-package: $*"
}

# lintian; systemd for systemd-analyze (a package like any other: no running systemd needed).
missing=()
for p in lintian systemd binutils; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "building the package"
rm -f target/debian/hintbus_*.deb
deploy/package.sh
debs=(target/debian/hintbus_*.deb)
[ ${#debs[@]} = 1 ] && [ -f "${debs[0]}" ] || fail "expected one target/debian/hintbus_*.deb, found: ${debs[*]}"
deb="${debs[0]}"
version=$(dpkg-deb -f "$deb" Version)
echo "$deb: version $version"

step "contents"
root=$(mktemp -d)
control=$(mktemp -d)
trap 'rm -rf "$root" "$control"' EXIT
dpkg-deb -x "$deb" "$root"
dpkg-deb -e "$deb" "$control"
changelog_version=$(sed -n '1s/^hintbus (\([^)]*\)).*/\1/p' deploy/changelog)
[ "$changelog_version" = "$version" ] || fail "deploy/changelog's latest entry is $changelog_version, the package $version: add an entry"
if readelf -S --wide "$root/usr/bin/hintbus" | grep -Eq '\.debug_|\.symtab'; then
  fail "usr/bin/hintbus is not stripped"
fi
expect=(usr/bin/hintbus
  usr/lib/systemd/system/hintbus-agent.service usr/lib/systemd/system/hintbus-broker.service
  usr/share/hintbus/config.ini.example
  usr/share/doc/hintbus/README.md usr/share/doc/hintbus/changelog.Debian.gz usr/share/doc/hintbus/copyright
  usr/share/man/man1/hintbus.1.gz usr/share/man/man1/hintbus-agent.1.gz usr/share/man/man1/hintbus-broker.1.gz
  usr/share/man/man1/hintbus-keygen.1.gz
  usr/share/bash-completion/completions/hintbus usr/share/zsh/vendor-completions/_hintbus
  usr/share/fish/vendor_completions.d/hintbus.fish)
for doc in docs/*.md; do expect+=("usr/share/doc/hintbus/$(basename "$doc")"); done
for f in "${expect[@]}"; do
  [ -s "$root/$f" ] || fail "$f missing from the package"
done
for s in "$control"/*inst "$control"/*rm; do
  if grep -q '#DEBHELPER#' "$s"; then fail "$(basename "$s") still has #DEBHELPER#"; fi
done
grep -q 'daemon-reload' "$control/postinst" || fail "postinst does not reload systemd"

step "lintian"
# --fail-on error: errors fail CI; warnings are printed for a human to weigh.
lintian --fail-on error --display-info "$deb" || fail "lintian reports errors (above)"

step "systemd-analyze security (3.0 or better)"
for unit in hintbus-agent hintbus-broker; do
  systemd-analyze security --offline=true --threshold=30 "$root/usr/lib/systemd/system/$unit.service" | tail -1 \
    || fail "$unit.service is rated above 3.0"
done

step "install"
if dpkg-query -W -f='${Status}' hintbus 2>/dev/null | grep -q 'installed'; then
  echo "hintbus is already installed here: purging it first"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq hintbus >/dev/null
fi
if getent passwd hintbus >/dev/null || getent group hintbus >/dev/null || [ -e /etc/hintbus ]; then
  fail "a hintbus user, group or /etc/hintbus exists before the install: this check needs a machine without them"
fi
apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" "./$deb" >/dev/null \
    || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" "./$deb" >/dev/null; }
}
apt_purge() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq hintbus >/dev/null
}
apt_install
getent passwd hintbus >/dev/null || fail "no hintbus user after install"
getent group hintbus >/dev/null || fail "no hintbus group after install"
[ "$(stat -c '%a %U %G' /etc/hintbus)" = "750 root hintbus" ] || fail "/etc/hintbus is $(stat -c '%a %U %G' /etc/hintbus)"
[ "$(stat -c '%a %U %G' /etc/hintbus/config.ini)" = "640 root hintbus" ] \
  || fail "/etc/hintbus/config.ini is $(stat -c '%a %U %G' /etc/hintbus/config.ini)"
/usr/bin/hintbus --version
# Unknown or misspelt directives, and an ExecStart= that is not there, fail here.
systemd-analyze verify /usr/lib/systemd/system/hintbus-agent.service /usr/lib/systemd/system/hintbus-broker.service \
  || fail "systemd-analyze verify finds fault with the units (above)"
if ls /etc/systemd/system/*.wants/hintbus-* >/dev/null 2>&1; then
  fail "the install enabled a unit; the README has the administrator enable the one the host runs"
fi

step "upgrade (the same version again: postinst configure with the old version)"
echo "; edited by the administrator" | as_root tee -a /etc/hintbus/config.ini >/dev/null
apt_install --reinstall
grep -q 'edited by the administrator' /etc/hintbus/config.ini || fail "the upgrade replaced the administrator's config.ini"

step "purge"
apt_purge
if getent passwd hintbus >/dev/null; then fail "purge left the hintbus user"; fi
if getent group hintbus >/dev/null; then fail "purge left the hintbus group"; fi
[ ! -e /etc/hintbus ] || fail "purge left /etc/hintbus: $(ls -A /etc/hintbus)"
[ ! -e /usr/bin/hintbus ] || fail "purge left /usr/bin/hintbus"

step "purge after the administrator added a key pair to /etc/hintbus"
apt_install
as_root /usr/bin/hintbus keygen --out /etc/hintbus/agent.key --name a --owner hintbus >/dev/null
[ "$(stat -c '%U' /etc/hintbus/agent.key)" = hintbus ] || fail "keygen --owner hintbus did not give the key to hintbus"
apt_purge
if getent passwd hintbus >/dev/null || getent group hintbus >/dev/null; then fail "purge left the hintbus user or group"; fi
[ ! -e /etc/hintbus/config.ini ] || fail "purge left /etc/hintbus/config.ini"
for f in /etc/hintbus /etc/hintbus/agent.key /etc/hintbus/agent.key.pub; do
  [ "$(stat -c '%U %G' "$f")" = "root root" ] \
    || fail "the kept $f belongs to $(stat -c '%U %G' "$f"), not root: a later account with that id could read it"
done
as_root rm -rf /etc/hintbus

echo "ci-package: OK ($deb: lintian without errors, both units 3.0 or better, install/upgrade/purge clean)"
