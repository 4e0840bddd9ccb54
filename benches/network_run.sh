#!/usr/bin/env bash
# `docker run --rm busybox true` on refengd and on dockerd 20.10 side by side, timed by hyperfine,
# with --network none, on the default bridge, on a user network, and on the bridge with a
# published port: what wiring a container's namespace costs in each engine. Then the throughput
# of a busybox httpd behind a published port, reached from the loopback (refengd's in-process
# proxy against dockerd's docker-proxy): requests per second for a small file and MiB/s for a
# 1 MiB one, 4 clients for 5 s each. Everything runs inside `unshare --net --mount` (both
# daemons, their bridges and rules), nothing on the host.
# Needs root, hyperfine, docker.io, busybox-static and the docker CLI 28 (`bash .ci/setup`).
#
# Usage: bash benches/network_run.sh [RUNS]     (default 20 runs each)
#        REFENG_BIN=target/release ...           (where refengd and its helpers are; default
#                                                 target/debug, built here if missing)
set -euo pipefail
runs=${1:-20}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${REFENG_NETWORK_RUN_INNER:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "network_run: needs root" >&2; exit 1; }
  bin=${REFENG_BIN:-$here/target/debug}
  if [ ! -x "$bin/refengd" ]; then
    cargo build --manifest-path "$here/Cargo.toml" --bin refengd --bin refeng-containerd \
      --bin refeng-shim --bin containerd-shim-refeng-v2 --bin refeng-runc >&2
  fi
  exec unshare --net --mount --propagation private -- \
    env REFENG_NETWORK_RUN_INNER=1 REFENG_BIN="$bin" bash "$0" "$@"
fi
ip link set lo up
bin=$REFENG_BIN
cli=/usr/local/bin/docker
work=$(mktemp -d /tmp/refeng-network-run.XXXXXX)
pids=()
cleanup() {
  for h in "$work/refeng.sock" "$work/docker.sock"; do
    ids=$(DOCKER_HOST="unix://$h" "$cli" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || DOCKER_HOST="unix://$h" "$cli" rm -f $ids >/dev/null 2>&1 || true
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
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
    DOCKER_HOST="unix://$work/$h.sock" "$cli" version >/dev/null 2>&1 && break
    sleep 0.1
  done
  DOCKER_HOST="unix://$work/$h.sock" "$cli" import -c 'ENV PATH=/bin' "$work/busybox.tar" \
    busybox:latest >/dev/null
done
DOCKER_HOST="unix://$work/refeng.sock" "$cli" network create --subnet 10.210.0.0/24 net >/dev/null
DOCKER_HOST="unix://$work/docker.sock" "$cli" network create --subnet 10.211.0.0/24 net >/dev/null
cmds=()
for mode in "--network none" "" "--network net" "-p 18300:80"; do
  for h in refeng docker; do
    cmds+=("DOCKER_HOST=unix://$work/$h.sock $cli run --rm $mode busybox true")
  done
done
hyperfine --warmup 2 --runs "$runs" --style basic --shell=bash "${cmds[@]}" 2>&1 |
  sed "s|DOCKER_HOST=unix://$work/||; s|$cli |docker |"

# Throughput through a published port: one httpd per engine, the same client against both.
port=18400
for h in refeng docker; do
  port=$((port + 1))
  DOCKER_HOST="unix://$work/$h.sock" "$cli" run -d --name web -p "127.0.0.1:$port:80" busybox \
    sh -c 'mkdir -p /www && head -c 1048576 /dev/zero >/www/big && echo hi >/www/small &&
           exec httpd -f -p 80 -h /www' >/dev/null
done
python3 - "$work" <<'PY'
import http.client, sys, threading, time

def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    if r.status != 200:
        raise SystemExit(f"port {port}{path}: HTTP {r.status}")
    return len(body)

def measure(port, path, secs=5.0, clients=4):
    counts, sizes = [0] * clients, [0] * clients
    end = time.monotonic() + secs
    def client(i):
        while time.monotonic() < end:
            sizes[i] += get(port, path)
            counts[i] += 1
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for t in threads: t.start()
    for t in threads: t.join()
    took = time.monotonic() - start
    return sum(counts) / took, sum(sizes) / took / 2**20

for name, port in (("refengd", 18401), ("dockerd", 18402)):
    for _ in range(100):
        try:
            get(port, "/small"); break
        except OSError:
            time.sleep(0.1)
    small, _ = measure(port, "/small")
    _, big = measure(port, "/big")
    print(f"{name}: {small:8.0f} req/s (small file)  {big:8.1f} MiB/s (1 MiB file)")
PY
