#!/usr/bin/env bash
# Resident memory of an idle shim: refeng-shim (containerd-shim-refeng-v2) next to containerd's
# containerd-shim-runc-v2, each serving one idle busybox container under the same private
# containerd. Needs root, containerd, runc and busybox-static (Debian packages of those names).
#
#   benches/shim_rss.sh            # builds the binaries first
#   SKIP_BUILD=1 benches/shim_rss.sh
#
# The shim is built as it is meant to be installed: profile `shim` (size-optimised, fat LTO,
# stripped), a static non-PIE executable on musl; refeng-runc comes from the release profile.
# Needs the Rust target x86_64-unknown-linux-musl (added with rustup when missing), musl-tools
# (musl-gcc, for the C in the library's dependencies) and libseccomp-dev (the library links
# libseccomp; the shim uses none of it).
#
# Prints one line per shim: VmRSS with its file-backed and anonymous parts, Pss, private memory
# (what one more container really costs), threads; then the ratio of the RSS.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
target=x86_64-unknown-linux-musl
if [[ -z "${SKIP_BUILD:-}" ]]; then
  # musl, not static glibc: static glibc brings 0.75 MB of text (stdio/scanf for
  # pthread_getattr_np, strtod, dlopen for NSS and iconv, every string-function variant) spread
  # over the binary, and the kernel maps file text in whole 64 kB folios, so nearly all of it is
  # resident; musl's part is 60 kB. Non-PIE: no relocations to dirty at start. libseccomp comes
  # from a directory holding only libseccomp.a, so that the linker does not find glibc's libc.a
  # next to it (a fixed path: a new one would rebuild the library every time).
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >&2 ||
      { echo "shim_rss: needs the Rust target $target (rustup target add $target)" >&2; exit 1; }
  fi
  command -v musl-gcc >/dev/null ||
    { echo "shim_rss: needs musl-gcc (apt-get install musl-tools; .ci/setup installs it)" >&2; exit 1; }
  seccomp_dir="$repo/target/$target/libseccomp-static"
  mkdir -p "$seccomp_dir"
  ln -sf /usr/lib/x86_64-linux-gnu/libseccomp.a "$seccomp_dir/"
  CC_x86_64_unknown_linux_musl=musl-gcc \
    LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="$seccomp_dir" \
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
    cargo build --manifest-path "$repo/Cargo.toml" --profile shim --target "$target" \
    --bin containerd-shim-refeng-v2 >&2
  cargo build --release --manifest-path "$repo/Cargo.toml" --bin refeng-runc >&2
fi
release="$repo/target/release"
shim="$repo/target/$target/shim/containerd-shim-refeng-v2"
# Idle long enough for the shim to drop its idle events connection (10 s).
idle_seconds=${IDLE_SECONDS:-15}

work=$(mktemp -d /tmp/shimrss.XXXXXX)
containerd_pid=""
cleanup() {
  set +e
  for id in rss-refeng rss-refeng2 rss-runc rss-runc2; do
    ctr -a "$work/c.sock" task kill -s KILL "$id" >/dev/null 2>&1
  done
  sleep 0.5
  for id in rss-refeng rss-refeng2 rss-runc rss-runc2; do
    ctr -a "$work/c.sock" task rm -f "$id" >/dev/null 2>&1
    ctr -a "$work/c.sock" container rm "$id" >/dev/null 2>&1
  done
  # Any shim of ours still alive (matched by our private containerd address), by pid.
  for p in $(pgrep -f -- "-address $work/c.sock" || true); do kill -9 "$p" 2>/dev/null; done
  if [[ -n "$containerd_pid" ]]; then kill -9 "$containerd_pid" 2>/dev/null; wait "$containerd_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bin" "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys"
ln -s "$shim" "$work/bin/containerd-shim-refeng-v2"
ln -s "$release/refeng-runc" "$work/bin/refeng-runc"
cp /usr/bin/busybox "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/sleep"
printf 'Root = "%s/runtime-root"\n' "$work" > "$work/refeng.toml"
cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$work/c.sock"
[ttrpc]
  address = "$work/c.sock.ttrpc"
TOML

PATH="$work/bin:$PATH" REFENG_SHIM_SOCKET_DIR="$work/s" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
containerd_pid=$!
for _ in $(seq 100); do ctr -a "$work/c.sock" version >/dev/null 2>&1 && break; sleep 0.1; done

# Two containers per shim kind: the second shows what the shims share (text, libraries), so its
# Pss approaches what one more container costs.
for n in "" 2; do
  ctr -a "$work/c.sock" run -d --runtime io.containerd.refeng.v2 --runtime-config-path "$work/refeng.toml" \
    --env PATH=/bin --rootfs "$work/rootfs" "rss-refeng$n" sleep 100000 </dev/null
  ctr -a "$work/c.sock" run -d --runtime io.containerd.runc.v2 \
    --env PATH=/bin --rootfs "$work/rootfs" "rss-runc$n" sleep 100000 </dev/null
done
sleep "$idle_seconds"

shim_pid() { # the shim serving task $1 of our containerd (flag order differs between shims)
  local p
  for p in $(pgrep -f -- "$work/c.sock"); do
    if tr '\0' ' ' <"/proc/$p/cmdline" | grep -q -- "-id $1 "; then echo "$p"; return; fi
  done
}
report() { # name pid -> prints and echoes RSS kB on fd 3
  local name=$1 pid=$2 rss pss uss threads file anon
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
  file=$(awk '/^RssFile:/ {print $2}' "/proc/$pid/status")
  anon=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status")
  threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
  pss=$(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup")
  uss=$(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' "/proc/$pid/smaps_rollup")
  printf '%-26s VmRSS %6s kB (file %6s, anon %6s)  Pss %6s kB  private %6s kB  threads %s\n' \
    "$name" "$rss" "$file" "$anon" "$pss" "$uss" "$threads"
  echo "$rss" >&3
}
exec 3>"$work/rss"
report containerd-shim-refeng-v2 "$(shim_pid rss-refeng)"
report containerd-shim-runc-v2 "$(shim_pid rss-runc)"
exec 3>/dev/null
report "  2nd refeng (shared)" "$(shim_pid rss-refeng2)"
report "  2nd runc-v2 (shared)" "$(shim_pid rss-runc2)"
exec 3>&-
mapfile -t rss <"$work/rss"
awk -v a="${rss[0]}" -v b="${rss[1]}" 'BEGIN { printf "refeng-shim RSS is %.1f%% of containerd-shim-runc-v2 (%.1fx smaller)\n", 100*a/b, b/a }'
