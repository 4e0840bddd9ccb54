#!/usr/bin/env bash
# The CLI's own cost: `refeng` against the docker CLI 28 on the same refengd, side by side with
# hyperfine: `version`, `ps -a` with 100 containers, `run --rm busybox true`. hyperfine runs each
# CLI directly (no shell), so its user and system times are the CLI process's own CPU time; the
# daemon's work is the same for both and is in the wall time only. Prints each mean and the
# ratios refeng/docker (wall, user+sys). refengd runs inside `unshare --net --mount` with
# private directories, nothing on the host.
# Needs root, hyperfine, busybox-static, the docker CLI 28 in /usr/local/bin (`bash .ci/setup`).
#
# Usage: bash benches/cli_vs_docker.sh [RUNS]     (default 30 runs each)
#        REFENG_BIN=target/release ...           (default target/debug, built here if missing;
#                                                 the CLI's cost is a release build's number)
set -euo pipefail
runs=${1:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${REFENG_CLI_BENCH_INNER:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "cli_vs_docker: needs root" >&2; exit 1; }
  bin=${REFENG_BIN:-$here/target/debug}
  for b in refeng refengd refeng-containerd refeng-shim containerd-shim-refeng-v2 refeng-runc; do
    if [ ! -x "$bin/$b" ]; then
      cargo build --manifest-path "$here/Cargo.toml" --bin refeng --bin refengd \
        --bin refeng-containerd --bin refeng-shim --bin containerd-shim-refeng-v2 \
        --bin refeng-runc >&2
      break
    fi
  done
  exec unshare --net --mount --propagation private -- \
    env REFENG_CLI_BENCH_INNER=1 REFENG_BIN="$bin" bash "$0" "$@"
fi
ip link set lo up
bin=$REFENG_BIN
docker=/usr/local/bin/docker
refeng=$bin/refeng
work=$(mktemp -d /tmp/refeng-cli-bench.XXXXXX)
sock=$work/refeng.sock
pids=()
cleanup() {
  ids=$(DOCKER_HOST="unix://$sock" "$docker" ps -aq 2>/dev/null || true)
  [ -z "$ids" ] || DOCKER_HOST="unix://$sock" "$docker" rm -f $ids >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # What refengd started (its containerd, shims) names our directory: end it by pid.
  for p in /proc/[0-9]*; do
    # (A process may be gone between the glob and the read: the redirection's error is hidden.)
    if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "$work/"; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
  sleep 0.5
  { grep " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$work" || echo "cli_vs_docker: $work is left behind" >&2
}
trap cleanup EXIT

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/proc" "$work/rootfs/sys" \
  "$work/rootfs/dev" "$work/rootfs/tmp" "$work/cfg"
cp /usr/bin/busybox "$work/rootfs/bin/busybox"
for a in $(/usr/bin/busybox --list); do
  [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
echo '{}' > "$work/refeng.json"
"$bin/refengd" -H "unix://$sock" --data-root "$work/data" --exec-root "$work/exec" \
  --config-file "$work/refeng.json" --bridge none >"$work/refengd.log" 2>&1 &
pids+=($!)
export DOCKER_HOST="unix://$sock" DOCKER_CONFIG="$work/cfg"
for _ in $(seq 300); do
  "$refeng" version >/dev/null 2>&1 && break
  sleep 0.1
done
"$refeng" import -c 'ENV PATH=/bin' "$work/busybox.tar" busybox:latest >/dev/null

results=()
bench() {
  local name=$1; shift
  local json="$work/$name.json"
  echo "== $name"
  hyperfine -N --warmup 3 --runs "$runs" --style basic --export-json "$json" \
    -n refeng "$refeng $*" -n docker "$docker $*"
  results+=("$json")
}
bench version version
for i in $(seq 100); do "$refeng" create --network none --name "c$i" busybox true >/dev/null; done
bench ps-100 ps -a
"$refeng" rm $("$refeng" ps -aq) >/dev/null
bench run-rm run --rm --network none busybox true

echo
echo "| command | refeng wall | docker wall | refeng user+sys | docker user+sys | wall ratio | CPU ratio |"
echo "|---|---|---|---|---|---|---|"
for j in "${results[@]}"; do
  python3 - "$j" <<'EOF'
import json, os, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
a, b = r["refeng"], r["docker"]
cpu = lambda x: x["user"] + x["system"]
ms = lambda s: f"{s * 1000:.1f} ms"
name = os.path.basename(sys.argv[1])[:-5]
print(f"| {name} | {ms(a['mean'])} | {ms(b['mean'])} | {ms(cpu(a))} | {ms(cpu(b))} "
      f"| {a['mean'] / b['mean']:.2f}x | {cpu(a) / cpu(b):.2f}x |")
EOF
done
echo "(load average: $(cut -d' ' -f1-3 /proc/loadavg))"
