#!/usr/bin/env bash
# Resident memory of an idle refeng-containerd next to an idle containerd 1.6, each a private
# instance (temporary root, state and socket), each asked for its version and then, after one
# `ctr images import` of the same busybox archive and a settle time, measured from
# /proc/PID/status. Needs root, containerd and umoci (Debian packages), musl-tools and
# libseccomp-dev. Also prints how long each took from start to answering `ctr version`.
#
#   benches/containerd_rss.sh            # builds refeng-containerd first
#   SKIP_BUILD=1 benches/containerd_rss.sh
#
# refeng-containerd is built as it is meant to be installed: profile `containerd` (size-
# optimised, fat LTO, stripped), a static non-PIE executable on musl (see benches/shim_rss.sh
# for why musl and non-PIE).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=x86_64-unknown-linux-musl
if [[ -z "${SKIP_BUILD:-}" ]]; then
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >&2 ||
      { echo "containerd_rss: needs the Rust target $target" >&2; exit 1; }
  fi
  command -v musl-gcc >/dev/null ||
    { echo "containerd_rss: needs musl-gcc (apt-get install musl-tools)" >&2; exit 1; }
  seccomp_dir="$repo/target/$target/libseccomp-static"
  mkdir -p "$seccomp_dir"
  ln -sf /usr/lib/x86_64-linux-gnu/libseccomp.a "$seccomp_dir/"
  CC_x86_64_unknown_linux_musl=musl-gcc \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="$seccomp_dir" \
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --manifest-path "$repo/Cargo.toml" --profile containerd --target "$target" \
    --bin refeng-containerd >&2
fi
daemon="${REFENG_CONTAINERD:-$repo/target/$target/containerd/refeng-containerd}"
# Idle means idle: refeng-containerd closes its metadata store after 10 s without use (checked
# every 5 s), so the default settle waits past that.
settle=${SETTLE_SECONDS:-20}

work=$(mktemp -d /tmp/ctdrss.XXXXXX)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for m in $(grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT

# The same image for both: busybox in a one-layer OCI archive, made by umoci.
umoci init --layout "$work/oci" >/dev/null
umoci new --image "$work/oci:busybox" >/dev/null
umoci unpack --image "$work/oci:busybox" "$work/bundle" >/dev/null
mkdir -p "$work/bundle/rootfs/bin"
cp /usr/bin/busybox "$work/bundle/rootfs/bin/busybox"
ln -s busybox "$work/bundle/rootfs/bin/sh"
umoci repack --image "$work/oci:busybox" "$work/bundle" >/dev/null
(cd "$work/oci" && tar -cf ../busybox-oci.tar .)

mkdir -p "$work/real" "$work/refeng"
cat > "$work/real/config.toml" <<TOML
version = 2
root = "$work/real/root"
state = "$work/real/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/real/c.sock"
[ttrpc]
  address = "$work/real/c.sock.ttrpc"
TOML
up() { # socket: milliseconds until it answers `ctr version`
  local start=$(date +%s%N)
  for _ in $(seq 2000); do ctr -a "$1" version >/dev/null 2>&1 && break; sleep 0.005; done
  echo $(( ($(date +%s%N) - start) / 1000000 ))
}
containerd --config "$work/real/config.toml" >"$work/real/log" 2>&1 &
pids+=($!); real_pid=$!
real_up=$(up "$work/real/c.sock")
"$daemon" --address "$work/refeng/c.sock" --root "$work/refeng/root" --state "$work/refeng/state" \
  --log-level warn >"$work/refeng/log" 2>&1 &
pids+=($!); refeng_pid=$!
refeng_up=$(up "$work/refeng/c.sock")
echo "up (start to answering ctr version, incl. one ctr run): refeng-containerd ${refeng_up} ms, containerd ${real_up} ms"

for who in real refeng; do
  start=$(date +%s%N)
  ctr -a "$work/$who/c.sock" images import --index-name bench/busybox:1 "$work/busybox-oci.tar" >/dev/null
  eval "${who}_import=\$(( (\$(date +%s%N) - start) / 1000000 ))"
done
echo "ctr images import (busybox, unpacked to overlayfs): refeng-containerd ${refeng_import} ms, containerd ${real_import} ms"
sleep "$settle"

rss() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
line() {
  local name=$1 pid=$2
  awk -v n="$name" '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssFile/{f=$2} /^Threads/{t=$2}
    END{printf "%-20s VmRSS %6d kB (anon %6d, file %6d)  threads %d\n", n, r, a, f, t}' "/proc/$pid/status"
}
line refeng-containerd "$refeng_pid"
line containerd "$real_pid"
r=$(rss "$refeng_pid"); c=$(rss "$real_pid")
awk -v r="$r" -v c="$c" 'BEGIN{printf "idle RSS ratio refeng-containerd/containerd: %.3f\n", r/c}'

# A restart on the same directories (kill -9, as a crash): the state is opened, not created.
kill -9 "$real_pid" "$refeng_pid"; wait "$real_pid" "$refeng_pid" 2>/dev/null || true
containerd --config "$work/real/config.toml" >>"$work/real/log" 2>&1 &
pids+=($!)
real_up=$(up "$work/real/c.sock")
"$daemon" --address "$work/refeng/c.sock" --root "$work/refeng/root" --state "$work/refeng/state" \
  --log-level warn >>"$work/refeng/log" 2>&1 &
pids+=($!)
refeng_up=$(up "$work/refeng/c.sock")
echo "up again after kill -9: refeng-containerd ${refeng_up} ms, containerd ${real_up} ms"
