#!/usr/bin/env bash
# The fuzz smoke CI runs: installs cargo-fuzz once (cached), seeds every target's corpus from the
# golden fixtures, builds every target and runs each for a short time under AddressSanitizer
# with a low memory limit. Exits non-zero on any crash, panic, timeout or allocation past the
# limits; the input that caused it is left in fuzz/artifacts/<target>/.
#
#   bash fuzz/smoke.sh                                  # 30 s per target
#   KGROUP_FUZZ_SECONDS=360 KGROUP_FUZZ_RSS_MB=512 nice -n 19 bash fuzz/smoke.sh   # a long run
set -euo pipefail
cd "$(dirname "$0")"
cache="${KGROUP_CACHE_DIR:-$HOME/.cache/kgroup}"
seconds="${KGROUP_FUZZ_SECONDS:-30}"
# A single allocation past 64 MiB, or a process past 256 MiB (AddressSanitizer's own shadow and
# quarantine included), is a crash: every target bounds what its input can make it allocate.
# libFuzzer's own tables grow with the corpus: a run of many minutes needs KGROUP_FUZZ_RSS_MB=512.
malloc_limit_mb=64
rss_limit_mb="${KGROUP_FUZZ_RSS_MB:-256}"

version=0.13.2
root="$cache/cargo-fuzz-$version"
if [ ! -x "$root/bin/cargo-fuzz" ]; then
  echo "installing cargo-fuzz $version into $root (about a minute)"
  CARGO_TARGET_DIR="$root/build" cargo install cargo-fuzz --version "$version" --locked --root "$root"
  rm -rf "$root/build"
fi
export PATH="$root/bin:$PATH"

# cargo-fuzz passes -Z flags (-Zsanitizer=address): nightly where the machine has it, otherwise
# stable with RUSTC_BOOTSTRAP=1.
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=nightly
else
  toolchain=stable
  export RUSTC_BOOTSTRAP=1
fi
# Outside the clone, so a later run rebuilds only what changed.
export CARGO_TARGET_DIR="$cache/fuzz-target-$toolchain"
# A small quarantine keeps AddressSanitizer's own share of the RSS limit small.
export ASAN_OPTIONS="quarantine_size_mb=16"

python3 seed-corpora.py
cargo "+$toolchain" fuzz build

mkdir -p artifacts
failed=()
for target in $(cargo "+$toolchain" fuzz list); do
  echo "== $target: ${seconds} s"
  log="artifacts/$target.log"
  if ! cargo "+$toolchain" fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb="$rss_limit_mb" \
    -malloc_limit_mb="$malloc_limit_mb" -timeout=10 -print_final_stats=1 2>"$log"; then
    failed+=("$target")
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done )' "$log" || true
done
if [ "${#failed[@]}" -gt 0 ]; then
  for target in "${failed[@]}"; do
    echo "== $target failed:"
    grep -E -A30 'ERROR|panicked|SUMMARY' "artifacts/$target.log" | head -60 || true
  done
  exit 1
fi
echo "fuzz smoke: every target ran ${seconds} s without a crash"
