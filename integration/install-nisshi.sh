#!/usr/bin/env bash
# Installs the test broker nisshi 0.8.1 from crates.io into the kgroup cache directory, once.
# Tests and the demo find it there (or through KGROUP_NISSHI_BIN); they would install it
# themselves too, but CI does it up front so test timings stay honest.
set -euo pipefail
version=0.8.1
root="${KGROUP_CACHE_DIR:-$HOME/.cache/kgroup}/nisshi-$version"
if [ -x "$root/bin/nisshi" ]; then
  echo "nisshi $version already installed at $root/bin/nisshi"
  exit 0
fi
mkdir -p "$root"
echo "installing nisshi $version into $root (about 12 minutes on 2 cores)"
# The default (stable) toolchain builds it: nisshi's only 1.96 demand is rama 0.4.0's declared
# rust-version, a policy bump that --ignore-rust-version overrides. Nightly is not needed.
# Its own target directory, so the install never fights the project's build over a lock.
CARGO_TARGET_DIR="$root/build" cargo install nisshi --version "$version" --locked \
  --ignore-rust-version --root "$root"
rm -rf "$root/build"
"$root/bin/nisshi" --version || true
