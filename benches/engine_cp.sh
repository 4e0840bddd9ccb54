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
name=engine_cp
# shellcheck source=benches/two_engines.sh
source "$(dirname "$0")/two_engines.sh"
"$bin/refengd" -H "unix://$work/refeng.sock" --data-root "$work/refeng-data" \
  --exec-root "$run/refeng-exec" --config-file "$work/refeng.json" --bridge none \
  >"$work/refengd.log" 2>&1 &
pids+=($!)
/usr/sbin/dockerd -H "unix://$work/docker.sock" --data-root "$work/docker-data" \
  --exec-root "$run/docker-exec" --pidfile "$work/dockerd.pid" --config-file "$work/docker.json" \
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
