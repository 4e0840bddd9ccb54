#!/usr/bin/env bash
# refengd against dockerd 20.10 through the same docker CLI 28 (issue 16's files benches), side
# by side with hyperfine: `docker cp` of a ~100 MiB tree (2000 small files and four large ones
# of incompressible bytes) into a running container and back out of it, and `docker commit` of
# a container whose writable layer changed 50 MiB (the image removed again before each commit).
# Both daemons run inside `unshare --net --mount`, private data roots, nothing on the host.
# Needs root, hyperfine, docker.io, busybox-static (`bash .ci/setup`).
#
# Usage: bash benches/engine_cp.sh [RUNS]        (default 10 runs each)
#        REFENG_BIN=target/release ...            (default target/debug, built here if missing)
set -euo pipefail
runs=${1:-10}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${REFENG_ENGINE_CP_INNER:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "engine_cp: needs root" >&2; exit 1; }
  bin=${REFENG_BIN:-$here/target/debug}
  if [ ! -x "$bin/refengd" ]; then
    cargo build --manifest-path "$here/Cargo.toml" --bin refengd --bin refeng-containerd \
      --bin refeng-shim --bin containerd-shim-refeng-v2 --bin refeng-runc >&2
  fi
  exec unshare --net --mount --propagation private -- \
    env REFENG_ENGINE_CP_INNER=1 REFENG_BIN="$bin" bash "$0" "$@"
fi
ip link set lo up
bin=$REFENG_BIN
cli=/usr/local/bin/docker
work=$(mktemp -d /tmp/refeng-engine-cp.XXXXXX)
pids=()
cleanup() {
  for h in "$work/refeng.sock" "$work/docker.sock"; do
    ids=$(DOCKER_HOST="unix://$h" "$cli" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || DOCKER_HOST="unix://$h" "$cli" rm -f $ids >/dev/null 2>&1 || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # What the daemons started (dockerd's containerd, shims) names our directory: end it by pid.
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q -- "$work/"; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
  sleep 0.5
  { grep " $work/" /proc/self/mountinfo || true; } | awk '{print $5}' | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$work" || echo "engine_cp: $work is left behind" >&2
}
trap cleanup EXIT
on() { local h=$1; shift; DOCKER_HOST="unix://$work/$h.sock" "$cli" "$@"; }

mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/proc" "$work/rootfs/sys" \
  "$work/rootfs/dev" "$work/rootfs/tmp"
cp /usr/bin/busybox "$work/rootfs/bin/busybox"
for a in $(/usr/bin/busybox --list); do
  [ "$a" = busybox ] || ln -s busybox "$work/rootfs/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/busybox.tar" .
echo '{}' > "$work/refeng.json"
echo '{}' > "$work/docker.json"
"$bin/refengd" -H "unix://$work/refeng.sock" --data-root "$work/refeng-data" \
  --exec-root "$work/refeng-exec" --config-file "$work/refeng.json" --bridge none \
  >"$work/refengd.log" 2>&1 &
pids+=($!)
/usr/sbin/dockerd -H "unix://$work/docker.sock" --data-root "$work/docker-data" \
  --exec-root "$work/docker-exec" --pidfile "$work/dockerd.pid" --config-file "$work/docker.json" \
  --exec-opt native.cgroupdriver=cgroupfs --bridge none --iptables=false \
  >"$work/dockerd.log" 2>&1 &
pids+=($!)
for h in refeng docker; do
  for _ in $(seq 300); do
    on "$h" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  on "$h" import -c 'ENV PATH=/bin' "$work/busybox.tar" busybox:latest >/dev/null
done

# The tree: 2000 files of 4 KiB in 20 directories (8 MiB), four of 23 MiB (92 MiB).
tree="$work/tree"
for d in $(seq 20); do
  mkdir -p "$tree/d$d"
  for i in $(seq 100); do head -c 4096 /dev/urandom > "$tree/d$d/f$i"; done
done
for n in 1 2 3 4; do head -c 24117248 /dev/urandom > "$tree/big$n"; done
echo "tree: $(du -sh "$tree" | cut -f1), $(find "$tree" -type f | wc -l) files; load: $(cut -d' ' -f1-3 /proc/loadavg)"

for h in refeng docker; do
  on "$h" run -d --network none --name cp busybox sleep 100000 >/dev/null
  on "$h" cp "$tree" cp:/src
done

echo "== docker cp of the tree into a running container"
hyperfine --runs "$runs" --style basic --shell=bash \
  --prepare "DOCKER_HOST=unix://$work/refeng.sock $cli exec cp rm -rf /dst" \
  --prepare "DOCKER_HOST=unix://$work/docker.sock $cli exec cp rm -rf /dst" \
  -n refengd -n dockerd \
  "DOCKER_HOST=unix://$work/refeng.sock $cli cp $tree cp:/dst" \
  "DOCKER_HOST=unix://$work/docker.sock $cli cp $tree cp:/dst"

echo "== docker cp of the tree out of a running container"
hyperfine --runs "$runs" --style basic --shell=bash \
  --prepare "rm -rf $work/out" \
  -n refengd -n dockerd \
  "DOCKER_HOST=unix://$work/refeng.sock $cli cp cp:/src $work/out" \
  "DOCKER_HOST=unix://$work/docker.sock $cli cp cp:/src $work/out"

echo "== docker commit of a container that changed 50 MiB"
for h in refeng docker; do
  on "$h" run --network none --name changed busybox \
    sh -c 'head -c 52428800 /dev/urandom > /changed' >/dev/null
done
hyperfine --runs "$runs" --style basic --shell=bash \
  --prepare "DOCKER_HOST=unix://$work/refeng.sock $cli rmi committed >/dev/null 2>&1 || true" \
  --prepare "DOCKER_HOST=unix://$work/docker.sock $cli rmi committed >/dev/null 2>&1 || true" \
  -n refengd -n dockerd \
  "DOCKER_HOST=unix://$work/refeng.sock $cli commit changed committed" \
  "DOCKER_HOST=unix://$work/docker.sock $cli commit changed committed"
for h in refeng docker; do
  [ "$(on "$h" run --rm --network none committed wc -c /changed)" = "52428800 /changed" ] \
    || { echo "engine_cp: the commit on $h lost the change" >&2; exit 1; }
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
