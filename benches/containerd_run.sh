#!/usr/bin/env bash
# `ctr run --rm ... true` through refeng-containerd + refeng-shim against containerd 1.6 +
# containerd-shim-runc-v2, both over refeng-runc, each daemon private (temporary root, state and
# socket), with hyperfine. Needs root, containerd, hyperfine and busybox-static (Debian packages
# of those names).
#
#   benches/containerd_run.sh            # builds the release binaries first
#   SKIP_BUILD=1 RUNS=50 benches/containerd_run.sh
#
# The task runs from a busybox directory (`--rootfs`), so both sides do the same work below the
# task API and no snapshotter is measured. What `ctr` itself costs (a Go client start, a lease,
# the container record, FIFOs, the task API round trips) and what refeng-runc costs (create,
# start, delete) are in both numbers alike.
#
# /run is a tmpfs, as on a standard host: the bench re-runs itself in a private mount namespace
# with a fresh tmpfs on /run, and both daemons keep their state (bundles, shim sockets and
# address files, the runtime's state) there, while their roots (the metadata databases, which
# both commit with fsync) stay on the disk. On this VM /run is on the disk, where each durable
# write of refeng's runtime state costs a file and a directory fsync (about 7.5 ms) and
# containerd's, which it writes without fsync, costs nothing: `RUN_ON_DISK=1` measures that.
set -euo pipefail

if [[ -z "${RUN_ON_DISK:-}" && -z "${CONTAINERD_RUN_NS:-}" ]]; then
  exec env CONTAINERD_RUN_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
state_base=/tmp
if [[ -n "${CONTAINERD_RUN_NS:-}" ]]; then
  mount -t tmpfs -o mode=0755 bench-run /run
  state_base=/run
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --release --manifest-path "$repo/Cargo.toml" \
    --bin refeng-containerd --bin containerd-shim-refeng-v2 --bin refeng-runc >&2
fi
release="$repo/target/release"
runs=${RUNS:-30}

work=$(mktemp -d /tmp/ctdrun.XXXXXX)
states=$(mktemp -d "$state_base/ctdrun-state.XXXXXX")
pids=()
cleanup() {
  set +e
  # Shims of our two daemons (their command line names our private sockets), by pid.
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "-address $work/"; then
      kill -9 "${p#/proc/}" 2>/dev/null
    fi
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  grep " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null
  done
  rm -rf "$work" "$states"
}
trap cleanup EXIT

mkdir -p "$work/bin" "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys"
ln -s "$release/containerd-shim-refeng-v2" "$work/bin/containerd-shim-refeng-v2"
ln -s "$release/refeng-runc" "$work/bin/refeng-runc"
cp /usr/bin/busybox "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/true"
cat > "$work/config.toml" <<TOML
version = 2
root = "$work/c/root"
state = "$states/c"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/c.sock"
[ttrpc]
  address = "$work/c.sock.ttrpc"
TOML

PATH="$work/bin:$PATH" REFENG_SHIM_SOCKET_DIR="$states/s" \
  containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
pids+=($!)
PATH="$work/bin:$PATH" REFENG_SHIM_SOCKET_DIR="$states/s" \
  "$release/refeng-containerd" --address "$work/r.sock" --root "$work/r/root" \
  --state "$states/r" --log-level warn >"$work/refeng-containerd.log" 2>&1 &
pids+=($!)
for sock in c.sock r.sock; do
  for _ in $(seq 100); do ctr -a "$work/$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
done

refeng="ctr -a $work/r.sock run --rm --runtime io.containerd.refeng.v2 --rootfs $work/rootfs bench-r true"
containerd="ctr -a $work/c.sock run --rm --runtime io.containerd.runc.v2 --runc-binary $release/refeng-runc --rootfs $work/rootfs bench-c true"
# Both must work before they are timed.
$refeng </dev/null
$containerd </dev/null

hyperfine --warmup 3 --runs "$runs" --export-json "$work/result.json" \
  -n "refeng-containerd + refeng-shim" "$refeng" \
  -n "containerd + containerd-shim-runc-v2" "$containerd" >&2
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
a = r["refeng-containerd + refeng-shim"]
b = r["containerd + containerd-shim-runc-v2"]
print(f"refeng-containerd + refeng-shim:      {a['mean']*1000:7.1f} ms ± {a['stddev']*1000:.1f}")
print(f"containerd + containerd-shim-runc-v2: {b['mean']*1000:7.1f} ms ± {b['stddev']*1000:.1f}")
print(f"ratio (refeng / containerd): {a['mean']/b['mean']:.2f}x")
PY
