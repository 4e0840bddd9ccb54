#!/usr/bin/env bash
# `docker build` (the classic builder, DOCKER_BUILDKIT=0) of a 10-step Dockerfile against
# refengd and against dockerd (Debian's docker.io), each a private instance (temporary roots
# and socket; dockerd without bridge or iptables), from the same busybox base and context:
# cold (--no-cache), warm (everything from the cache), and with one changed file (the steps
# from its COPY on run again). Median of $RUNS runs each; prints the ratios refengd/dockerd.
# Needs root, docker.io and busybox-static (and curl for CLIENT=curl).
#
#   benches/build.sh                          # builds refengd and refeng-containerd (release)
#   SKIP_BUILD=1 REFENG_BIN_DIR=target/debug benches/build.sh
#   CLIENT=curl benches/build.sh              # POST /build with curl instead of the docker CLI
#   CLIENT=refeng benches/build.sh            # refeng build on refengd, docker build on dockerd
#
# With CLIENT=curl the context tar is made before the clock starts and sent by curl, so the
# numbers are the daemons' own: the docker CLI's start and API negotiation (about 40 ms here)
# are the same on both sides and, on a warm build, most of refengd's total.
# With CLIENT=refeng each engine gets its own client, as a user of each has it: `refeng build`
# against refengd, `docker build` against dockerd (issue 18's comparison: the whole stack).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${SKIP_BUILD:-}" ]]; then
  cargo build --manifest-path "$repo/Cargo.toml" --release --bin refengd --bin refeng-containerd \
    --bin refeng-shim --bin containerd-shim-refeng-v2 --bin refeng-runc --bin refeng >&2
fi
bin="${REFENG_BIN_DIR:-$repo/target/release}"
runs=${RUNS:-3}
client=${CLIENT:-docker}
cli=/usr/bin/docker   # the 20.10 CLI: it still takes DOCKER_BUILDKIT=0 against both

work=$(mktemp -d /tmp/buildbench.XXXXXX)
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
  rmdir /sys/fs/cgroup/*/build-bench /sys/fs/cgroup/build-bench 2>/dev/null || true
}
trap cleanup EXIT

wait_up() {
  for _ in $(seq 600); do
    DOCKER_HOST="unix://$1" "$cli" version >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "build bench: $1 did not answer" >&2; return 1
}

mkdir -p "$work/refeng" "$work/docker" "$work/rootfs/bin" "$work/rootfs/etc" "$work/ctx/src"
echo '{}' > "$work/refeng/daemon.json"
echo '{}' > "$work/docker/daemon.json"
PATH="$bin:$PATH" "$bin/refengd" -H "unix://$work/refeng/d.sock" --data-root "$work/refeng/data" \
  --exec-root "$work/refeng/exec" --config-file "$work/refeng/daemon.json" \
  >"$work/refeng/log" 2>&1 &
pids+=($!)
/usr/sbin/dockerd -H "unix://$work/docker/d.sock" --data-root "$work/docker/data" \
  --exec-root "$work/docker/exec" --pidfile "$work/docker/pid" \
  --config-file "$work/docker/daemon.json" --bridge=none --iptables=false --ip6tables=false \
  --ip-masq=false --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent /build-bench \
  >"$work/docker/log" 2>&1 &
pids+=($!)
wait_up "$work/refeng/d.sock"; wait_up "$work/docker/d.sock"

cp /bin/busybox "$work/rootfs/bin/busybox"
for a in sh echo cat mkdir seq touch; do ln -s busybox "$work/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
echo 'root:x:0:' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -cf "$work/base.tar" .
for i in $(seq 50); do head -c 4096 /dev/urandom > "$work/ctx/src/f$i"; done
echo one > "$work/ctx/changing"
cat > "$work/ctx/Dockerfile" <<'DF'
FROM bench:base
ENV A=1
COPY src /src
RUN seq 1 1000 > /numbers
WORKDIR /work
RUN mkdir -p out && cat /numbers > out/copy
LABEL stage=bench
COPY changing /changing
RUN cat /changing > /seen
CMD ["sh"]
DF

ms() { echo $(( $(date +%s%N) / 1000000 )); }
build() { # socket, flags...
  local s=$1; shift
  local t0
  if [[ $client == curl ]]; then
    local query="t=bench:out&q=1&networkmode=none"
    [[ ${1:-} == --no-cache ]] && query+="&nocache=1"
    tar -C "$work/ctx" -cf "$work/ctx.tar" .
    t0=$(ms)
    curl -sSf --unix-socket "$s" -H 'Content-Type: application/x-tar' \
      --data-binary "@$work/ctx.tar" "http://daemon/v1.41/build?$query" >"$work/out"
    local t1; t1=$(ms)
    if grep -q errorDetail "$work/out"; then cat "$work/out" >&2; return 1; fi
    echo $(( t1 - t0 ))
    return
  fi
  local c=$cli
  [[ $client == refeng && $s == "$work/refeng/d.sock" ]] && c=$bin/refeng
  t0=$(ms)
  DOCKER_HOST="unix://$s" DOCKER_BUILDKIT=0 "$c" build --network none -q -t bench:out "$@" \
    "$work/ctx" >/dev/null
  echo $(( $(ms) - t0 ))
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A result
for engine in refeng docker; do
  s="$work/$engine/d.sock"
  DOCKER_HOST="unix://$s" "$cli" import --change 'ENV PATH=/bin' "$work/base.tar" bench:base >/dev/null
  cold=(); warm=(); changed=()
  for r in $(seq "$runs"); do
    cold+=("$(build "$s" --no-cache)")
    warm+=("$(build "$s")")
    echo "change $engine $r $RANDOM" > "$work/ctx/changing"
    changed+=("$(build "$s")")
  done
  result[$engine,cold]=$(printf '%s\n' "${cold[@]}" | median)
  result[$engine,warm]=$(printf '%s\n' "${warm[@]}" | median)
  result[$engine,changed]=$(printf '%s\n' "${changed[@]}" | median)
done
for k in cold warm changed; do
  awk -v k="$k" -v a="${result[refeng,$k]}" -v b="${result[docker,$k]}" \
    'BEGIN { printf "%-8s refengd %6d ms  dockerd %6d ms  ratio %.2f\n", k, a, b, a / b }'
done
