#!/usr/bin/env bash
# Side by side: `run` of /bin/true on one busybox bundle with refeng-runc (the installed build:
# static musl, profile `runtime`, made by benches/build_runtime.sh), runc and
# crun, timed by hyperfine in a single run, then the peak RSS of each (`/usr/bin/time -v`), and
# the ratios refeng-runc/runc and refeng-runc/crun. Needs root, hyperfine, runc, crun, time,
# busybox-static (`bash .ci/setup` installs them).
#
# crun 1.8 refuses this hybrid host while cgroup2 is mounted at /sys/fs/cgroup/unified, so it runs
# inside `unshare -m` with that mount removed. That wrapper costs time of its own, so it is timed
# alone as well and subtracted before the crun ratio is taken (the raw numbers are printed too).
#
# Usage: bash benches/side_by_side.sh [RUNS]      (default 100 runs each, in ROUNDS=5 rounds)
#        REFENG_RUNTIME=/path/to/runtime ...       (time that binary in refeng-runc's place, no build)
set -euo pipefail

runs=${1:-100}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

[ "$(id -u)" = 0 ] || { echo "side_by_side: needs root (it runs real containers)" >&2; exit 1; }
for tool in hyperfine runc crun /usr/bin/time busybox; do
  command -v "$tool" >/dev/null || { echo "side_by_side: $tool missing (bash .ci/setup)" >&2; exit 1; }
done

if [ -n "${REFENG_RUNTIME:-}" ]; then
  refeng=$REFENG_RUNTIME
  echo "side_by_side: timing $refeng in refeng-runc's place"
else
  refeng=$(bash "$here/benches/build_runtime.sh" 2>/dev/null) ||
    { echo "side_by_side: bash benches/build_runtime.sh failed" >&2; exit 1; }
fi
runc=$(command -v runc)
crun=$(command -v crun)

work=$(mktemp -d /tmp/refeng-side-by-side.XXXXXX)
cleanup() {
  "$refeng" --root "$work/state-refeng" delete --force sbs-refeng >/dev/null 2>&1 || true
  "$runc" --root "$work/state-runc" delete --force sbs-runc >/dev/null 2>&1 || true
  unshare -m sh -c "umount /sys/fs/cgroup/unified 2>/dev/null; $crun --root $work/state-crun delete --force sbs-crun" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# One bundle for all three: runc's default spec, no terminal, /bin/true.
bundle=$work/bundle
mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/"{proc,sys,dev,tmp,etc}
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
for applet in sh true; do ln -s busybox "$bundle/rootfs/bin/$applet"; done
(cd "$bundle" && "$runc" spec)
sed -i -e 's/"terminal": true/"terminal": false/' \
       -e 's|^\([[:space:]]*\)"sh"$|\1"/bin/true"|' "$bundle/config.json"
grep -q '"/bin/true"' "$bundle/config.json" || { echo "side_by_side: could not set args" >&2; exit 1; }

cmd_refeng="$refeng --root $work/state-refeng run --bundle $bundle sbs-refeng"
cmd_runc="$runc --root $work/state-runc run --bundle $bundle sbs-runc"
wrap="unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null;"
cmd_crun="$wrap exec $crun --root $work/state-crun run --bundle $bundle sbs-crun'"
cmd_wrap="$wrap exec /bin/true'"

# Each must work before it is timed.
for c in "$cmd_refeng" "$cmd_runc" "$cmd_crun"; do
  sh -c "$c" </dev/null || { echo "side_by_side: failed: $c" >&2; exit 1; }
done

# hyperfine times one command after the other, so on a shared machine a change of load between
# two blocks of runs shows up as a difference between runtimes. The runs are therefore split into
# ROUNDS rounds (default 5), each timing every command, in reverse order every other round, and a
# runtime's mean is the mean over all its runs.
rounds=${ROUNDS:-5}
per_round=$(( (runs + rounds - 1) / rounds ))
: > "$work/times.csv"
for round in $(seq 1 "$rounds"); do
  set -- -n refeng-runc "$cmd_refeng" -n runc "$cmd_runc" -n crun "$cmd_crun" -n crun-wrapper-alone "$cmd_wrap"
  if (( round % 2 == 0 )); then
    set -- -n crun-wrapper-alone "$cmd_wrap" -n crun "$cmd_crun" -n runc "$cmd_runc" -n refeng-runc "$cmd_refeng"
  fi
  warmup=$(( round == 1 ? 10 : 2 ))
  echo "side_by_side: round $round of $rounds ($per_round runs each), load $(cut -d' ' -f1 /proc/loadavg)"
  hyperfine --runs "$per_round" --warmup "$warmup" -N --style none --export-csv "$work/round.csv" "$@" >/dev/null
  tail -n +2 "$work/round.csv" >> "$work/times.csv"
done

peak_rss_kib() { # the largest max-RSS among the command and the children it waited for
  /usr/bin/time -v sh -c "$1" </dev/null 2>&1 >/dev/null | awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}'
}
rss_refeng=$(peak_rss_kib "$cmd_refeng")
rss_runc=$(peak_rss_kib "$cmd_runc")
rss_crun=$(peak_rss_kib "$cmd_crun")

# hyperfine's CSV: command,mean,stddev,median,user,system,min,max (seconds); one line per round.
mean() { awk -F, -v n="$1" '$1 == n {s += $2; c++} END {print s / c}' "$work/times.csv"; }
t_refeng=$(mean refeng-runc); t_runc=$(mean runc); t_crun=$(mean crun); t_wrap=$(mean crun-wrapper-alone)

awk -v r="$t_refeng" -v u="$t_runc" -v c="$t_crun" -v w="$t_wrap" \
    -v rr="$rss_refeng" -v ru="$rss_runc" -v rc="$rss_crun" 'BEGIN {
  cn = c - w; if (cn <= 0) cn = c
  printf "\n%-12s %12s %14s\n", "runtime", "mean run", "peak RSS"
  printf "%-12s %9.2f ms %10d KiB\n", "refeng-runc", r * 1000, rr
  printf "%-12s %9.2f ms %10d KiB\n", "runc", u * 1000, ru
  printf "%-12s %9.2f ms %10d KiB   (%.2f ms raw, %.2f ms of it the unshare wrapper)\n", "crun", cn * 1000, rc, c * 1000, w * 1000
  printf "\ntime ratio refeng-runc/runc: %.2f   refeng-runc/crun: %.2f   (below 1: refeng-runc is faster)\n", r / u, r / cn
  printf "RSS  ratio refeng-runc/runc: %.2f   refeng-runc/crun: %.2f\n", rr / ru, rr / rc
}'
