# Sourced by the benches that run refengd (and dockerd 20.10) in a private namespace and drive
# them with the docker CLI 28 (engine_cli.sh, engine_cp.sh, cli_vs_docker.sh), with `name` set to
# the script's name first:
#   name=engine_cp; source "$(dirname "$0")/two_engines.sh"
# Runs the calling script again inside `unshare --net --mount` (builds the debug binaries when
# REFENG_BIN has none), then gives it: $bin (refeng's programs), $cli, $work (a private
# directory, removed at exit together with the containers, processes and mounts that name it,
# ended by pid), $run (where the daemons' exec roots go: a tmpfs, as /run is on a standard host;
# this VM's /run is on the disk, and `RUN_ON_DISK=1` keeps them there), `on refeng|docker ARGS...` (the CLI against that daemon), `pids` (processes to
# end at exit), $work/busybox.tar (busybox-static as a root filesystem) and the empty daemon
# configs $work/refeng.json and $work/docker.json. Starting the daemons is the caller's: their
# flags differ per bench.
here=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${REFENG_TWO_ENGINES_INNER:-}" ]; then
  [ "$(id -u)" = 0 ] || { echo "$name: needs root" >&2; exit 1; }
  bin=${REFENG_BIN:-$here/target/debug}
  for b in refeng refengd; do
    if [ ! -x "$bin/$b" ]; then
      cargo build --manifest-path "$here/Cargo.toml" --bin refeng --bin refengd \
        --bin refeng-containerd --bin refeng-shim --bin containerd-shim-refeng-v2 \
        --bin refeng-runc >&2
      break
    fi
  done
  exec unshare --net --mount --propagation private -- \
    env REFENG_TWO_ENGINES_INNER=1 REFENG_BIN="$bin" bash "$0" "$@"
fi
ip link set lo up
bin=$REFENG_BIN
cli=/usr/local/bin/docker
work=$(mktemp -d "/tmp/refeng-$name.XXXXXX")
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
  rm -rf "$work" || echo "$name: $work is left behind" >&2
}
trap cleanup EXIT
# A tmpfs for the exec roots and for /run itself (refeng-shim's runtime state, iptables' lock),
# both private to this mount namespace.
run=$work
if [ -z "${RUN_ON_DISK:-}" ]; then
  mount -t tmpfs -o mode=0755 bench-run /run
  run=$work/run
  mkdir -p "$run"
  mount -t tmpfs -o mode=0755 bench-exec "$run"
fi
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
