#!/usr/bin/env bash
# Fleet benchmark: what one nightly backup Job costs in a repository shared by H volumes.
#
# One repository on SeaweedFS; the measured volume (FILES small files, host
# claim-measured) is backed up once directly on the server, then `benches/fleet/gen.rs`
# (fleet-gen) adds hosts claim-user00000.. with their own data (5,000 small data blobs in
# one pack, one tree, one index file each) and 17 snapshots each, directly on the server.
# For each H in HOSTS, each tool runs through the WAN-like proxy (benches/e2e/wan-proxy.py,
# 20-30 ms each way) with a fresh, empty cache directory per command, as a pod does:
#   backup     the measured volume's nightly backup, unchanged since its parent
#   snapshots  `snapshots --host claim-measured`
# and records wall seconds and peak RSS (/usr/bin/time), HTTP requests in total and before
# the new snapshot's upload (the fixed cost: finding the parent and the index), and bytes
# received from the server. Each measured backup adds one snapshot of its tool's volume:
# each tool backs up the same directory as a host of its own (claim-measured for restash,
# claim-measured-<tool> for the others), so that one tool's retention never removes
# another's parent.
#
# Output: $BENCH_DIR/fleet.csv (every run), fleet.md (best of RUNS per H, tool and step)
# and fleet.svg (backup wall seconds against H). benches/README.md quotes them.
#
# Environment (all optional):
#   BENCH_DIR    working directory, on tmpfs                       [/dev/shm/restash-fleet]
#   HOSTS        fleet sizes, ascending                            ["0 100 1000 3000"]
#   RUNS         runs per H, tool and step; tables show the best   [2]
#   TOOLS        ["restash restic"]; `restash-nohint` is restash with --no-parent-hint
#                (every snapshot and the whole index, as before parent hints)
#   FILES        files in the measured volume                      [2000]
#   SNAPSHOTS    snapshots per generated host                      [17]
#   BLOBS        data blobs per generated host (100 files × BLOBS/100 blobs)   [5000]
#   RESTASH_BIN  [<workspace>/target-bench/release/restash]
#   FLEET_GEN    [<workspace>/target-bench/release/fleet-gen]
#   RESTIC_BIN   [/usr/bin/restic]
#   WAN_MIN_MS, WAN_MAX_MS   delay each way                        [20, 30]
#   SNAPSHOTS_UP_TO  measure `snapshots --host` only up to this H (it takes minutes beyond)
#                                                                  [every H]
#   PRUNE_AT     after measuring this H, measure prune there too: the snapshots of 50 hosts
#                forgotten before each of `prune` (exclusive throughout, as restic's),
#                `prune --retry-lock` (beside backups; one backup started 20 s into it is
#                timed) and restic's `prune` (unless PRUNE_RESTIC=0); the time backups
#                are blocked is recorded                           [none]
#   FORGET_KEEP  a keep policy ("--keep-daily 7"): also measure the Job with retention,
#                restash's `backup --forget $FORGET_KEEP` (step backup-forget) and
#                restic's `forget --host <its host> $FORGET_KEEP` after its backup
#                (step forget; restic has no backup --forget), each with
#                `--keep-tag fleet-template` for the snapshot fleet-gen copies   [none]
#   RESTASH_EXTRA  extra flags for restash's measured commands (a design under test)
# Build first: CARGO_TARGET_DIR=target-bench cargo build --release -p restash -p restash-benches
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
BENCH_DIR=${BENCH_DIR:-/dev/shm/restash-fleet}
HOSTS=${HOSTS:-"0 100 1000 3000"}
RUNS=${RUNS:-2}
TOOLS=${TOOLS:-"restash restic"}
FILES=${FILES:-2000}
SNAPSHOTS=${SNAPSHOTS:-17}
BLOBS=${BLOBS:-5000}
RESTASH_BIN=${RESTASH_BIN:-$ROOT/target-bench/release/restash}
FLEET_GEN=${FLEET_GEN:-$ROOT/target-bench/release/fleet-gen}
RESTIC_BIN=${RESTIC_BIN:-/usr/bin/restic}
WAN_MIN_MS=${WAN_MIN_MS:-20}
WAN_MAX_MS=${WAN_MAX_MS:-30}
SNAPSHOTS_UP_TO=${SNAPSHOTS_UP_TO:-1000000000}
read -r -a RESTASH_EXTRA <<<"${RESTASH_EXTRA:-}"
export RESTIC_PASSWORD=fleet-bench
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND || true

die() { echo "fleet: $*" >&2; exit 1; }
for b in "$RESTASH_BIN" "$FLEET_GEN" "$RESTIC_BIN" /usr/bin/time; do
    [ -x "$b" ] || die "$b not found (build: CARGO_TARGET_DIR=$ROOT/target-bench cargo build --release -p restash -p restash-benches)"
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mkdir -p "$BENCH_DIR"
LOG_DIR=$BENCH_DIR/logs
rm -rf "$LOG_DIR"
mkdir -p "$LOG_DIR"
OUT_CSV=$BENCH_DIR/fleet.csv
echo "hosts,snapshots,tool,run,step,wall_s,rss_kib,requests,requests_before_upload,bytes_down,blocked_s" >"$OUT_CSV"

# ---------------------------------------------------------------- the measured volume
VOL=$BENCH_DIR/volume/home/jovyan
if [ ! -f "$BENCH_DIR/volume.stamp" ] || [ "$(cat "$BENCH_DIR/volume.stamp")" != "$FILES" ]; then
    rm -rf "$BENCH_DIR/volume"
    python3 - "$VOL" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(17)
for i in range(n):
    d = os.path.join(root, f"project-{i % 20:02}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file-{i:05}.txt"), "w") as f:
        f.write(rng.randbytes(rng.randint(512, 4096)).hex())
EOF
    echo "$FILES" >"$BENCH_DIR/volume.stamp"
fi

# ---------------------------------------------------------------- server and proxy
PIDS=()
S3_DIR=$BENCH_DIR/seaweedfs
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    bash "$ROOT/scripts/s3-server.sh" stop "$S3_DIR" >/dev/null 2>&1 || true
    rm -rf "$S3_DIR"
}
trap cleanup EXIT
rm -rf "$S3_DIR"
s3_port=$(free_port)
bash "$ROOT/scripts/s3-server.sh" start "$S3_DIR" "$s3_port" >"$LOG_DIR/s3-start.log" 2>&1 \
    || { cat "$LOG_DIR/s3-start.log" >&2; die "SeaweedFS did not start"; }
export AWS_ACCESS_KEY_ID=testkey AWS_SECRET_ACCESS_KEY=testsecret
pport=$(free_port)
REQ_LOG=$LOG_DIR/requests.log
: >"$REQ_LOG"
python3 "$ROOT/benches/e2e/wan-proxy.py" "$pport" "127.0.0.1:$s3_port" "$WAN_MIN_MS" "$WAN_MAX_MS" \
    "$REQ_LOG" </dev/null >"$LOG_DIR/proxy.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$pport),1)" 2>/dev/null && break
    sleep 0.1
done

BUCKET=fleet-$(date -u +%Y%m%dt%H%M%S)
DIRECT=s3:http://127.0.0.1:$s3_port/$BUCKET
WAN=s3:http://127.0.0.1:$pport/$BUCKET

"$RESTASH_BIN" -r "$DIRECT" init -q
# Tagged: fleet-gen copies this snapshot for each new H, so retention keeps it.
"$RESTASH_BIN" -r "$DIRECT" backup -q --host claim-measured --tag fleet-template "$VOL"
TEMPLATE=$("$RESTASH_BIN" -r "$DIRECT" snapshots --json --host claim-measured |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
# Each tool's volume, and its first backup, directly: every measured backup has a parent.
host_of() { if [ "$1" = restash ]; then echo claim-measured; else echo "claim-measured-$1"; fi; }
for tool in $TOOLS; do
    [ "$tool" = restash ] && continue
    case $tool in
        restic) "$RESTIC_BIN" -r "$DIRECT" backup -q --host "$(host_of "$tool")" "$VOL" >/dev/null ;;
        *) "$RESTASH_BIN" -r "$DIRECT" backup -q --host "$(host_of "$tool")" "$VOL" ;;
    esac
done

# ---------------------------------------------------------------- measuring
# Request log lines FROM+1..TO: "requests,requests before the snapshot upload,bytes down".
req_summary() {
    sed -n "$(($1 + 1)),$2p" "$REQ_LOG" | python3 -c '
import sys
reqs = before = down = 0
uploaded = False
for line in sys.stdin:
    f = line.split()
    if len(f) < 3 or f[2] in ("CONNECT", "UNPARSED"):
        continue
    if f[2] == "CLOSE":
        down += int(f[4])
        continue
    reqs += 1
    if f[2] in ("PUT", "POST") and "/snapshots/" in f[3]:
        uploaded = True
    if not uploaded:
        before += 1
b = before if uploaded else ""
print(f"{reqs},{b},{down}")
'
}

measure() { # H TOOL RUN STEP ARGS...
    local h=$1 tool=$2 run=$3 step=$4
    shift 4
    local cache out from to bin
    cache=$(mktemp -d "$BENCH_DIR/cache.XXXXXX")
    out=$LOG_DIR/$h-$tool-$run-$step
    bin=$RESTASH_BIN
    local extra=("${RESTASH_EXTRA[@]}")
    if [ "$tool" = restic ]; then bin=$RESTIC_BIN; extra=(); fi
    local after=()
    case "$tool:$step" in restash-nohint:backup*) after=(--no-parent-hint) ;; esac
    from=$(wc -l <"$REQ_LOG")
    if ! /usr/bin/time -f '%e %M' -o "$out.time" "$bin" -r "$WAN" --cache-dir "$cache" \
        "${extra[@]}" "$@" "${after[@]}" >"$out.out" 2>"$out.err"; then
        echo "fleet: $tool $step at H=$h failed:" >&2
        tail -5 "$out.err" >&2
        echo "$h,$((h * SNAPSHOTS)),$tool,$run,$step,FAILED,,,,," >>"$OUT_CSV"
        rm -rf "$cache"
        return
    fi
    sleep 1 # the proxy logs each connection's bytes as it closes, one delay later
    to=$(wc -l <"$REQ_LOG")
    local wall rss blocked=
    read -r wall rss <"$out.time"
    # How long backups could not run: all of it for a prune under the exclusive lock, its
    # commit for one beside them.
    case $step in
        prune-beside) blocked=$(sed -n 's/.*exclusive lock was held for \([0-9.]*\) s.*/\1/p' "$out.out" | tail -1) ;;
        prune*) blocked=$wall ;;
    esac
    echo "$h,$((h * SNAPSHOTS)),$tool,$run,$step,$wall,$rss,$(req_summary "$from" "$to"),$blocked" >>"$OUT_CSV"
    printf 'H=%-5s %-8s %-9s run %s: %6.2f s, %7d KiB\n' "$h" "$tool" "$step" "$run" "$wall" "$rss" >&2
    rm -rf "$cache"
}

# Forgets every snapshot of hosts claim-userFROM … TO-1, directly (no delay).
forget_hosts() { # FROM TO
    local ids
    ids=$("$RESTASH_BIN" -r "$DIRECT" snapshots --json | python3 -c '
import json, sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
for s in json.load(sys.stdin):
    h = s["hostname"]
    if h.startswith("claim-user") and lo <= int(h[len("claim-user"):]) < hi:
        print(s["id"])' "$1" "$2")
    # shellcheck disable=SC2086 # one id per word
    "$RESTASH_BIN" -r "$DIRECT" forget -q $ids
}

measure_prune() { # H
    local h=$1
    forget_hosts 0 50
    measure "$h" restash 1 prune-exclusive prune
    forget_hosts 50 100
    # A backup that starts while prune stages beside it, timed on its own.
    (
        sleep 20
        /usr/bin/time -f '%e %M' -o "$LOG_DIR/$h-during-prune.time" "$RESTASH_BIN" -r "$WAN" \
            --cache-dir "$(mktemp -d "$BENCH_DIR/cache.XXXXXX")" backup -q --host claim-measured "$VOL" \
            >"$LOG_DIR/$h-during-prune.out" 2>&1
    ) &
    local during=$!
    measure "$h" restash 1 prune-beside prune --retry-lock 30m -vv
    wait "$during" || true
    local wall rss
    read -r wall rss <"$LOG_DIR/$h-during-prune.time"
    echo "$h,$((h * SNAPSHOTS)),restash,1,backup-during-prune,$wall,$rss,,,," >>"$OUT_CSV"
    printf 'H=%-5s restash  backup during prune: %6.2f s\n' "$h" "$wall" >&2
    if [ "${PRUNE_RESTIC:-1}" = 1 ]; then
        forget_hosts 100 150
        measure "$h" restic 1 prune-restic prune
    fi
}

done_hosts=0
for h in $HOSTS; do
    if [ "$h" -gt "$done_hosts" ]; then
        "$FLEET_GEN" "$DIRECT" "$TEMPLATE" "$done_hosts" "$h" --snapshots "$SNAPSHOTS" \
            --files 100 --blobs $((BLOBS / 100)) 2>&1 | tee -a "$LOG_DIR/gen.log" >&2
        done_hosts=$h
    fi
    for run in $(seq "$RUNS"); do
        for tool in $TOOLS; do
            mh=$(host_of "$tool")
            measure "$h" "$tool" "$run" backup backup -q --host "$mh" "$VOL"
            if [ -n "${FORGET_KEEP:-}" ]; then
                # shellcheck disable=SC2086 # the policy's words
                case $tool in
                    restic) measure "$h" "$tool" "$run" forget forget -q --host "$mh" $FORGET_KEEP --keep-tag fleet-template ;;
                    *) measure "$h" "$tool" "$run" backup-forget backup -q --host "$mh" "$VOL" --forget $FORGET_KEEP --keep-tag fleet-template ;;
                esac
            fi
            # Parent hints do not change `snapshots`: restash-nohint would repeat restash.
            if [ "$h" -le "$SNAPSHOTS_UP_TO" ] && [ "$tool" != restash-nohint ]; then
                measure "$h" "$tool" "$run" snapshots snapshots --host "$mh"
            fi
        done
    done
    if [ "${PRUNE_AT:-}" = "$h" ]; then measure_prune "$h"; fi
done

# ---------------------------------------------------------------- report
python3 - "$OUT_CSV" "$BENCH_DIR/fleet.md" "$BENCH_DIR/fleet.svg" "$WAN_MIN_MS" "$WAN_MAX_MS" \
    "$FILES" "$BLOBS" "$("$RESTASH_BIN" version)" "$("$RESTIC_BIN" version)" <<'EOF'
import csv, sys
src, md, svg, lo, hi, files, blobs, v_ours, v_restic = sys.argv[1:10]
rows = [r for r in csv.DictReader(open(src)) if r["wall_s"] not in ("", "FAILED")]
best = {}
for r in rows:
    k = (int(r["hosts"]), r["tool"], r["step"])
    if k not in best or float(r["wall_s"]) < float(best[k]["wall_s"]):
        best[k] = r
hosts = sorted({k[0] for k in best})
tools = sorted({k[1] for k in best}, key=lambda t: (t != "restash", t))
out = [f"## Fleet benchmark: one volume's nightly Job in a shared repository",
       "",
       f"- SeaweedFS behind the delay proxy, {lo}-{hi} ms each way; a fresh empty cache per command",
       f"- measured volume: {files} files, unchanged since its parent; other hosts: 17 snapshots "
       f"and {blobs} data blobs each, their own index file",
       f"- {v_ours}; {v_restic}",
       "- best of the runs; requests: total / before the new snapshot's upload; MiB received",
       ""]
for step in ("backup", "snapshots", "backup-forget", "forget"):
    if not any(k[2] == step for k in best):
        continue
    head = "| hosts (snapshots) |" + "".join(f" {t} s | {t} RSS MiB | {t} requests | {t} MiB in |" for t in tools)
    out += [f"### `{step}`", "", head, "|---|" + "---:|" * (4 * len(tools))]
    for h in hosts:
        cells = []
        for t in tools:
            r = best.get((h, t, step))
            if r is None:
                cells += ["–"] * 4
                continue
            req = r["requests"] + (f" / {r['requests_before_upload']}" if r["requests_before_upload"] else "")
            cells += [f"{float(r['wall_s']):.2f}", f"{int(r['rss_kib']) / 1024:.0f}", req,
                      f"{int(r['bytes_down']) / 2**20:.1f}"]
        out.append(f"| {h:,} ({h * 17 + 1:,}) | " + " | ".join(cells) + " |")
    out.append("")
prunes = [r for r in rows if r["step"].startswith("prune") or r["step"] == "backup-during-prune"]
if prunes:
    out += ["### `prune` after 50 hosts' snapshots were forgotten", "",
            "| hosts | command | wall s | RSS MiB | backups blocked s |", "|---|---|---:|---:|---:|"]
    names = {"prune-exclusive": "restash `prune` (exclusive lock throughout)",
             "prune-beside": "restash `prune --retry-lock 30m` (beside backups)",
             "prune-restic": "restic 0.14 `prune`",
             "backup-during-prune": "restash `backup`, started 20 s into the prune beside it"}
    for r in prunes:
        out.append(f"| {int(r['hosts']):,} | {names.get(r['step'], r['step'])} | {float(r['wall_s']):.1f} | "
                   f"{int(r['rss_kib']) / 1024:.0f} | {r.get('blocked_s') or '–'} |")
    out.append("")
open(md, "w").write("\n".join(out) + "\n")
print("\n".join(out))

# Wall seconds of the backup against H, one line per tool.
W, H, L, B = 640, 360, 60, 40
xmax = max(hosts) or 1
ymax = max(float(best[(h, t, "backup")]["wall_s"]) for h in hosts for t in tools if (h, t, "backup") in best)
ymax = max(ymax * 1.1, 1)
x = lambda h: L + (W - L - 20) * h / xmax
y = lambda s: H - B - (H - B - 20) * s / ymax
colors = {"restash": "#1f77b4", "restic": "#d62728"}
parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<line x1="{L}" y1="{H-B}" x2="{W-20}" y2="{H-B}" stroke="black"/>',
         f'<line x1="{L}" y1="20" x2="{L}" y2="{H-B}" stroke="black"/>',
         f'<text x="{W/2}" y="{H-8}" text-anchor="middle">hosts in the repository (17 snapshots each)</text>',
         f'<text x="14" y="{H/2}" transform="rotate(-90 14 {H/2})" text-anchor="middle">nightly backup, wall s</text>']
for h in hosts:
    parts.append(f'<text x="{x(h):.0f}" y="{H-B+16}" text-anchor="middle">{h:,}</text>')
step = next(v for v in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if v >= ymax / 6)
s = 0
while s <= ymax:
    parts.append(f'<text x="{L-6}" y="{y(s)+4:.0f}" text-anchor="end">{s}</text>')
    parts.append(f'<line x1="{L}" y1="{y(s):.0f}" x2="{W-20}" y2="{y(s):.0f}" stroke="#ddd"/>')
    s += step
for i, t in enumerate(tools):
    pts = [(x(h), y(float(best[(h, t, "backup")]["wall_s"]))) for h in hosts if (h, t, "backup") in best]
    c = colors.get(t, "#2ca02c")
    parts.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="' + " ".join(f"{a:.0f},{b:.0f}" for a, b in pts) + '"/>')
    parts += [f'<circle cx="{a:.0f}" cy="{b:.0f}" r="3" fill="{c}"/>' for a, b in pts]
    parts.append(f'<text x="{L+10}" y="{34+16*i}" fill="{c}">{t}</text>')
parts.append("</svg>")
open(svg, "w").write("\n".join(parts) + "\n")
EOF
echo "fleet: $OUT_CSV, $BENCH_DIR/fleet.md, $BENCH_DIR/fleet.svg" >&2
