#!/bin/sh
# The whole kgroup vs librdkafka comparison, written to benches/RESULTS.md.
#
#   sh benches/compare.sh
#
# Sizes (defaults are issue 7's): KGROUP_BENCH_MESSAGES (1000000), KGROUP_BENCH_COMMITS (1000),
# KGROUP_BENCH_MEMBERS (30). The micro benchmarks run first: the harness reads their criterion
# estimates back into the table. Take it on a quiet machine; the file records the load average.
set -eu
cd "$(dirname "$0")/.."
cargo bench --bench micro
cargo bench --bench compare
