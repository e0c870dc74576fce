#!/usr/bin/env bash
# Builds the Debian package (target/debian/hintbus_*.deb) with cargo-deb.
# Install it with: apt install ./target/debian/hintbus_*.deb
# then edit /etc/hintbus/config.ini and: systemctl enable --now hintbus-agent (or hintbus-broker)
set -euo pipefail
cd "$(dirname "$0")/.."
./dev setup

# Pinned: the maintainer-script fragments it writes over #DEBHELPER# were checked with this one.
CARGO_DEB_VERSION=3.8.0
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb
fi

# The binary first (profile deb: release without debug info, stripped), then what it generates
# for the package, then the .deb from those without building again.
cargo build --locked --profile deb -p hintbus
bin="${CARGO_TARGET_DIR:-target}/deb/hintbus"
assets=deploy/generated
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" man "$assets/man"
gzip -9n "$assets"/man/*.1
"$bin" completions bash >"$assets/completions/hintbus"
"$bin" completions zsh >"$assets/completions/_hintbus"
"$bin" completions fish >"$assets/completions/hintbus.fish"
cargo deb -p hintbus --no-build
