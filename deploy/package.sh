#!/usr/bin/env bash
# Builds the Debian package (target/debian/hintbus_*.deb) with cargo-deb.
# Install it with: apt install ./target/debian/hintbus_*.deb
# then edit /etc/hintbus/config.ini and: systemctl enable --now hintbus-agent (or hintbus-broker)
set -euo pipefail
cd "$(dirname "$0")/.."
./dev setup
command -v cargo-deb >/dev/null 2>&1 || cargo install --locked cargo-deb
cargo deb -p hintbus
