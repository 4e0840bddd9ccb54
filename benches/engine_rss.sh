#!/usr/bin/env bash
# Idle resident memory of refengd + the refeng-containerd it supervises, next to dockerd + the
# containerd it starts (Debian's docker.io), each a private instance (temporary data root, exec
# root and socket; dockerd without bridge or iptables). Each is asked `docker version` and
# `docker info` by the same docker CLI, then after a settle time measured from /proc/PID/status
# (VmRSS of the daemon and of its containerd child). Needs root and docker.io.
#
#   benches/engine_rss.sh                 # builds refengd and refeng-containerd (release) first
#   SKIP_BUILD=1 benches/engine_rss.sh
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --manifest-path "$repo/Cargo.toml" --release --bin refengd --bin refeng-containerd >&2
fi
bin="${REFENG_BIN_DIR:-$repo/target/release}"
# Idle means idle: refeng-containerd closes its metadata store after 10 s without use (checked
# every 5 s), so the default settle waits past that. A 30 s settle changed dockerd's
# and containerd's numbers by under 1% (dockerd + containerd: 111.2 MB at 5 s, 110.9 MB at 30 s).
settle=${SETTLE_SECONDS:-20}
docker=${DOCKER_CLI:-/usr/local/bin/docker}

work=$(mktemp -d /tmp/enginerss.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
  for m in $(grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
child_pid() { pgrep -P "$1" -x "$2" | head -1; }
wait_up() {
  for _ in $(seq 600); do
    DOCKER_HOST="unix://$1" "$docker" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "engine_rss: $1 did not answer" >&2; return 1
}

mkdir -p "$work/refeng" "$work/docker"
echo '{}' > "$work/refeng/daemon.json"
echo '{}' > "$work/docker/daemon.json"
"$bin/refengd" -H "unix://$work/refeng/d.sock" --data-root "$work/refeng/data" \
  --exec-root "$work/refeng/exec" --config-file "$work/refeng/daemon.json" --bridge none \
  >"$work/refeng/log" 2>&1 &
pids+=($!); refengd=$!
/usr/sbin/dockerd -H "unix://$work/docker/d.sock" --data-root "$work/docker/data" \
  --exec-root "$work/docker/exec" --pidfile "$work/docker/pid" \
  --config-file "$work/docker/daemon.json" --bridge=none --iptables=false --ip6tables=false \
  --ip-masq=false --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent /engine-rss \
  >"$work/docker/log" 2>&1 &
pids+=($!); dockerd=$!
wait_up "$work/refeng/d.sock"; wait_up "$work/docker/d.sock"
for s in "$work/refeng/d.sock" "$work/docker/d.sock"; do
  DOCKER_HOST="unix://$s" "$docker" info >/dev/null
done
sleep "$settle"
rctd=$(child_pid "$refengd" refeng-containe); dctd=$(child_pid "$dockerd" containerd)
r1=$(rss_kb "$refengd"); r2=$(rss_kb "${rctd:-0}")
d1=$(rss_kb "$dockerd"); d2=$(rss_kb "${dctd:-0}")
printf 'refengd %s kB + refeng-containerd %s kB = %s kB\n' "$r1" "$r2" $((r1 + r2))
printf 'dockerd %s kB + containerd %s kB = %s kB\n' "$d1" "$d2" $((d1 + d2))
awk -v a=$((r1 + r2)) -v b=$((d1 + d2)) 'BEGIN { printf "ratio %.3f\n", a / b }'
rmdir /sys/fs/cgroup/*/engine-rss 2>/dev/null || true
