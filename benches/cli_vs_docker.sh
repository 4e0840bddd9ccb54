#!/usr/bin/env bash
# The CLI's own cost: `refeng` against the docker CLI 28 on the same refengd, side by side with
# hyperfine: `version`, `ps -a` with 100 containers, `run --rm busybox true`. hyperfine runs each
# CLI directly (no shell), so its user and system times are the CLI process's own CPU time; the
# daemon's work is the same for both and is in the wall time only. Prints each mean and the
# ratios refeng/docker (wall, user+sys). refengd runs inside `unshare --net --mount` with
# private directories, nothing on the host.
# Needs root, hyperfine, busybox-static, the docker CLI 28 in /usr/local/bin (`bash .ci/setup`).
#
# Usage: bash benches/cli_vs_docker.sh [RUNS]     (default 30 runs each)
#        REFENG_BIN=target/release ...           (default target/debug, built here if missing;
#                                                 the CLI's cost is a release build's number)
set -euo pipefail
runs=${1:-30}
name=cli_vs_docker
# shellcheck source=benches/two_engines.sh
source "$(dirname "$0")/two_engines.sh"
docker=$cli
refeng=$bin/refeng
sock=$work/refeng.sock
mkdir -p "$work/cfg"
"$bin/refengd" -H "unix://$sock" --data-root "$work/data" --exec-root "$run/exec" \
  --config-file "$work/refeng.json" --bridge none >"$work/refengd.log" 2>&1 &
pids+=($!)
export DOCKER_HOST="unix://$sock" DOCKER_CONFIG="$work/cfg"
for _ in $(seq 300); do
  "$refeng" version >/dev/null 2>&1 && break
  sleep 0.1
done
"$refeng" import -c 'ENV PATH=/bin' "$work/busybox.tar" busybox:latest >/dev/null

results=()
bench() {
  local name=$1; shift
  local json="$work/$name.json"
  echo "== $name"
  hyperfine -N --warmup 3 --runs "$runs" --style basic --export-json "$json" \
    -n refeng "$refeng $*" -n docker "$docker $*"
  results+=("$json")
}
bench version version
for i in $(seq 100); do "$refeng" create --network none --name "c$i" busybox true >/dev/null; done
bench ps-100 ps -a
"$refeng" rm $("$refeng" ps -aq) >/dev/null
bench run-rm run --rm --network none busybox true

echo
echo "| command | refeng wall | docker wall | refeng user+sys | docker user+sys | wall ratio | CPU ratio |"
echo "|---|---|---|---|---|---|---|"
for j in "${results[@]}"; do
  python3 - "$j" <<'EOF'
import json, os, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
a, b = r["refeng"], r["docker"]
cpu = lambda x: x["user"] + x["system"]
ms = lambda s: f"{s * 1000:.1f} ms"
name = os.path.basename(sys.argv[1])[:-5]
print(f"| {name} | {ms(a['mean'])} | {ms(b['mean'])} | {ms(cpu(a))} | {ms(cpu(b))} "
      f"| {a['mean'] / b['mean']:.2f}x | {cpu(a) / cpu(b):.2f}x |")
EOF
done
echo "(load average: $(cut -d' ' -f1-3 /proc/loadavg))"
