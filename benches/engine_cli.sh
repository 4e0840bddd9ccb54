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
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${REFENG_ENGINE_CLI_INNER:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "engine_cli: needs root" >&2; exit 1; }
  bin=${REFENG_BIN:-$here/target/debug}
  if [ ! -x "$bin/refengd" ]; then
    cargo build --manifest-path "$here/Cargo.toml" --bin refengd --bin refeng-containerd \
      --bin refeng-shim --bin containerd-shim-refeng-v2 --bin refeng-runc >&2
  fi
  exec unshare --net --mount --propagation private -- \
    env REFENG_ENGINE_CLI_INNER=1 REFENG_BIN="$bin" bash "$0" "$@"
fi
ip link set lo up
bin=$REFENG_BIN
cli=/usr/local/bin/docker
work=$(mktemp -d /tmp/refeng-engine-cli.XXXXXX)
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
  rm -rf "$work" || echo "engine_cli: $work is left behind" >&2
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
  --exec-root "$work/refeng-exec" --config-file "$work/refeng.json" >"$work/refengd.log" 2>&1 &
pids+=($!)
/usr/sbin/dockerd -H "unix://$work/docker.sock" --data-root "$work/docker-data" \
  --exec-root "$work/docker-exec" --pidfile "$work/dockerd.pid" --config-file "$work/docker.json" \
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
