#!/bin/sh
# The whole kgroup vs librdkafka comparison, written to benches/RESULTS.md.
#
#   sh benches/compare.sh
#
# Sizes (defaults are issue 7's): KGROUP_BENCH_MESSAGES (1000000), KGROUP_BENCH_COMMITS (1000),
# KGROUP_BENCH_MEMBERS (30). The micro benchmarks run first, into a criterion directory of their
# own so that no estimate of an earlier or renamed benchmark reaches the table; the harness reads
# them back. Take it on a quiet machine: the file records the load average.
set -eu
cd "$(dirname "$0")/.."
CRITERION_HOME="$(pwd)/target/criterion-compare"
export CRITERION_HOME
rm -rf "$CRITERION_HOME"
cargo bench --bench micro --features test-support
cargo bench --bench compare --features embedded-broker,test-support
