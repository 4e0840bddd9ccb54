#!/usr/bin/env bash
# The side-by-side comparison with crun and runc inside a VM guest of the VM suite, e.g. the
# cgroup v2 one (this host is hybrid):
#
#   bash benches/build_runtime.sh && cargo bench --bench lifecycle --no-run
#   cargo run --manifest-path vm-tests/Cargo.toml -- --cgroup v2 --script 'benches/vm_compare.sh 30'
#
# Runs benches/side_by_side.sh (RUNS runs each, default 30) and the lifecycle bench, both
# timing the installed build of refeng-runc (benches/build_runtime.sh) that the host made: the
# guest has no compiler of its own and sees the host's files read-only, the project read-write.
# Under emulation only the ratios mean something.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
runtime=$repo/target/x86_64-unknown-linux-musl/runtime/refeng-runc
[ -x "$runtime" ] || { echo "vm_compare: $runtime missing (bash benches/build_runtime.sh)" >&2; exit 1; }
bench=$(ls -t target/release/deps/lifecycle-* 2>/dev/null | grep -v '\.d$' | head -n 1 || true)
[ -n "$bench" ] || { echo "vm_compare: no lifecycle bench built (cargo bench --bench lifecycle --no-run)" >&2; exit 1; }

echo "vm_compare: cgroup $(stat -f -c %T /sys/fs/cgroup), load $(cut -d' ' -f1-3 /proc/loadavg)"
REFENG_RUNTIME=$runtime bash benches/side_by_side.sh "${1:-30}"
REFENG_RUNTIME=$runtime "$bench" --bench --noplot --warm-up-time 1 --measurement-time 5 --sample-size 10
