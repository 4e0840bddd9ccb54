#!/usr/bin/env bash
# refengd against dockerd 20.10 through the same docker CLI 28 (issue 14's benches), side by
# side with hyperfine: `docker run --rm --network none busybox true`, `docker ps -a` with 100
# containers, and `docker pull` of a six-layer image (~36 MiB: small files and incompressible
# bytes, built by dockerd) from a loopback docker-registry, removed again before each pull.
# Both daemons run inside `unshare --net --mount`, private data roots, nothing on the host.
# Needs root, hyperfine, docker.io, docker-registry, busybox-static (`bash .ci/setup`).
# Idle memory is benches/engine_rss.sh.
#
# Usage: bash benches/engine_cli.sh [RUNS]       (default 15 runs each)
#        REFENG_BIN=target/release ...            (default target/debug, built here if missing)
set -euo pipefail
runs=${1:-15}
name=engine_cli
# shellcheck source=benches/two_engines.sh
source "$(dirname "$0")/two_engines.sh"
"$bin/refengd" -H "unix://$work/refeng.sock" --data-root "$work/refeng-data" \
  --exec-root "$run/refeng-exec" --config-file "$work/refeng.json" >"$work/refengd.log" 2>&1 &
pids+=($!)
/usr/sbin/dockerd -H "unix://$work/docker.sock" --data-root "$work/docker-data" \
  --exec-root "$run/docker-exec" --pidfile "$work/dockerd.pid" --config-file "$work/docker.json" \
  --exec-opt native.cgroupdriver=cgroupfs --bip 10.66.0.1/24 >"$work/dockerd.log" 2>&1 &
pids+=($!)
for h in refeng docker; do
  for _ in $(seq 300); do
    on "$h" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  on "$h" import -c 'ENV PATH=/bin' "$work/busybox.tar" busybox:latest >/dev/null
done

echo "== docker run --rm --network none busybox true"
hyperfine --warmup 2 --runs "$runs" --style basic --shell=bash \
  -n refengd "DOCKER_HOST=unix://$work/refeng.sock $cli run --rm --network none busybox true" \
  -n dockerd "DOCKER_HOST=unix://$work/docker.sock $cli run --rm --network none busybox true"

echo "== docker ps -a with 100 containers"
for h in refeng docker; do
  for i in $(seq 100); do on "$h" create --network none --name "c$i" busybox true >/dev/null; done
done
hyperfine --warmup 2 --runs "$runs" --style basic --shell=bash \
  -n refengd "DOCKER_HOST=unix://$work/refeng.sock $cli ps -a" \
  -n dockerd "DOCKER_HOST=unix://$work/docker.sock $cli ps -a"
for h in refeng docker; do on "$h" rm $(on "$h" ps -aq) >/dev/null; done

echo "== docker pull of a six-layer image from a loopback registry"
cat > "$work/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:5099
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:5099/v2/")' \
    2>/dev/null && break
  sleep 0.1
done
ctx="$work/ctx"
mkdir -p "$ctx"
{ echo "FROM busybox:latest"; for n in 1 2 3 4 5 6; do echo "COPY l$n /l$n"; done; } > "$ctx/Dockerfile"
for n in 1 2 3 4 5 6; do
  mkdir -p "$ctx/l$n"
  for i in $(seq 300); do printf 'layer %d file %d %0900d\n' "$n" "$i" 0 > "$ctx/l$n/f$i"; done
  head -c 5242880 /dev/urandom > "$ctx/l$n/big"
done
image=127.0.0.1:5099/bench/multilayer:1
DOCKER_BUILDKIT=0 on docker build -q -t "$image" "$ctx" >/dev/null
on docker push "$image" >/dev/null
on docker rmi "$image" >/dev/null
hyperfine --runs "$runs" --style basic --shell=bash \
  --prepare "DOCKER_HOST=unix://$work/refeng.sock $cli rmi $image >/dev/null 2>&1 || true" \
  --prepare "DOCKER_HOST=unix://$work/docker.sock $cli rmi $image >/dev/null 2>&1 || true" \
  -n refengd -n dockerd \
  "DOCKER_HOST=unix://$work/refeng.sock $cli pull -q $image" \
  "DOCKER_HOST=unix://$work/docker.sock $cli pull -q $image"
