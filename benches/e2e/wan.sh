#!/usr/bin/env bash
# End-to-end benchmark over a WAN-like link: restash against restic on SeaweedFS behind a
# TCP proxy that adds WAN_MIN_MS..WAN_MAX_MS (20-30 ms) in each direction, i.e. 40-60 ms
# per request round trip. The dataset is 300 MiB of random data in 3 files plus 5,000
# small files in one tree. Each variant (a tool with a cache policy) gets its own bucket
# and runs, in order:
#   init, first backup, no-change re-backup, snapshots, ls latest, dump one file (cmp),
#   for restash the web view (benches/e2e/serve-get.py: start `serve`, the volumes page;
#   then start again, the page and one download, checked),
#   restore one file (--include, checked with cmp), full restore (checked with diff -r)
# each under `/usr/bin/time`. Prints a markdown table (best of RUNS per step) with the
# ratios restash warm / restic warm and restash cold / restic --no-cache, and a second
# table with the HTTP requests and new connections each step made (counted by the proxy).
#
# Mount step (MOUNT=1): a second dataset of 100,000 × SCALE small files in 100 dirs is
# backed up once by restic straight to SeaweedFS (not through the proxy: only the
# mount is measured over the link), into its own bucket. Then each of MOUNT_TOOLS mounts
# it through the proxy with an empty --cache-dir ("mount-cold") and again with that same
# cache dir ("mount-warm"); each time the time from starting `mount` to one file
# (MOUNT_FILE) read through the mount is measured (benches/e2e/mount-cat.py, which then
# stops the mount with SIGINT). Rows: variant "<tool>-mount", steps mount-cold/mount-warm;
# the backup is variant "mount-setup". Needs /dev/fuse and fusermount3.
#
# Variants (VARIANTS, in order; all four by default):
#   restic-warm      restic with one --cache-dir for the whole sequence (empty at init)
#   restic-nocache   restic --no-cache on every command (what a pod without a volume sees)
#   restash-cold     restash with a fresh empty --cache-dir for every command (a pod whose
#                    /tmp is new each night)
#   restash-warm     restash with one --cache-dir for the whole sequence (empty at init)
#   restash-nocache  restash --no-cache on every command (optional)
#
# Proxies (WAN_PROXY):
#   delay          benches/e2e/wan-proxy.py, a delay line: every chunk is forwarded
#                  WAN_MIN_MS..WAN_MAX_MS late in each direction without holding back the
#                  ones behind it, a new connection pays one more round trip (handshake),
#                  bandwidth is not limited; it also counts HTTP requests.   [default]
#   fault-latency  fault-cli's `latency` fault (uniform WAN_MIN_MS..WAN_MAX_MS, flow both),
#                  the setup of the issue. It delays only the first read and first write
#                  of each connection: requests on a kept-alive connection pass undelayed.
#   fault-jitter   fault-cli's `jitter` fault at probability 1: every read/write op of the
#                  proxy is delayed, ~8 KiB each, so bulk transfers crawl (~25 ms per 8 KiB).
#   none           no proxy: SeaweedFS on loopback directly.
# Only `delay` counts requests; the others report n/a.
#
# Environment (all optional):
#   BENCH_DIR     working directory, on tmpfs                      [/dev/shm/restash-bench]
#   SCALE         dataset scale factor (0.05 = quick try)          [1]
#                   300 MiB × SCALE of random data in 3 files (big/random-{0,1,2}.bin)
#                   5,000 × SCALE files of 1-8 KiB hex text in 100 dirs (small/dNN/)
#   VARIANTS      see above; "none" runs only the mount step
#                 ["restic-warm restic-nocache restash-cold restash-warm"]
#   RUNS          repetitions; the table shows the best (minimum) wall time   [1]
#   WAN_PROXY     delay | fault-latency | fault-jitter | none                 [delay]
#   WAN_MIN_MS / WAN_MAX_MS   one-way delay range in ms                       [20 / 30]
#   ONE_FILE      the file restored by "restore one file", relative to the dataset
#                 [small/d07/f000007.txt]
#   MOUNT         1: the mount step, 0: not                                    [1]
#   MOUNT_FILES   files in the mount dataset                      [100,000 × SCALE]
#   MOUNT_FILE    the file read through the mount, relative to it [d42/f054342.txt if
#                 there are that many files, else d07/f000007.txt]
#   MOUNT_TOOLS   which tools mount, in order                      ["restic restash"]
#   RESTASH_BIN   [<workspace>/target-bench/release/restash if built, else target/release]
#   RESTIC_BIN    [/usr/bin/restic]
#   RESTIC_PASSWORD  repository password for both tools   [restash-bench]
#   S3_URL        `s3:http://HOST:PORT` of a running S3 server (AWS_ACCESS_KEY_ID and
#                 AWS_SECRET_ACCESS_KEY set) to put the proxy in front of; unset: SeaweedFS
#                 is started by scripts/s3-server.sh under BENCH_DIR and stopped after
#   OUT_CSV / OUT_MD  result files                [$BENCH_DIR/wan-results.{csv,md}]
#   KEEP          1: keep restores and cache dirs  [0]
#   REGEN         1: regenerate the dataset even if present  [0]
# The tools run with their default S3 concurrency (restic: -o s3.connections=5).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

BENCH_DIR=${BENCH_DIR:-/dev/shm/restash-bench}
SCALE=${SCALE:-1}
VARIANTS=${VARIANTS:-"restic-warm restic-nocache restash-cold restash-warm"}
if [ "$VARIANTS" = none ]; then VARIANTS=""; fi
MOUNT=${MOUNT:-1}
MOUNT_TOOLS=${MOUNT_TOOLS:-"restic restash"}
RUNS=${RUNS:-1}
WAN_PROXY=${WAN_PROXY:-delay}
WAN_MIN_MS=${WAN_MIN_MS:-20}
WAN_MAX_MS=${WAN_MAX_MS:-30}
ONE_FILE=${ONE_FILE:-small/d07/f000007.txt}
if [ -z "${RESTASH_BIN:-}" ]; then
    RESTASH_BIN=$ROOT/target/release/restash
    if [ -x "$ROOT/target-bench/release/restash" ]; then RESTASH_BIN=$ROOT/target-bench/release/restash; fi
fi
RESTIC_BIN=${RESTIC_BIN:-/usr/bin/restic}
OUT_CSV=${OUT_CSV:-$BENCH_DIR/wan-results.csv}
OUT_MD=${OUT_MD:-$BENCH_DIR/wan-results.md}
KEEP=${KEEP:-0}
REGEN=${REGEN:-0}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-restash-bench}
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND \
    RESTIC_CACHE_DIR 2>/dev/null || true
TIME=/usr/bin/time

die() { echo "wan.sh: $*" >&2; exit 1; }
note() { echo "wan.sh: $*" >&2; }

[ -x "$TIME" ] || die "$TIME (GNU time) is required"
command -v python3 >/dev/null || die "python3 is required"
case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive integer" ;; esac
for v in $VARIANTS; do
    case $v in
        restic-warm | restic-nocache | restash-cold | restash-warm | restash-nocache) ;;
        *) die "unknown variant $v" ;;
    esac
done
for t in $MOUNT_TOOLS; do
    case $t in restic | restash) ;; *) die "unknown mount tool $t" ;; esac
done
if [ "$MOUNT" = 1 ] && { [ ! -e /dev/fuse ] || ! command -v fusermount3 >/dev/null; }; then
    note "no /dev/fuse or fusermount3: skipping the mount step"
    MOUNT=0
fi
[ -x "$RESTIC_BIN" ] || die "restic not found at $RESTIC_BIN"
[ -x "$RESTASH_BIN" ] || die "restash not found at $RESTASH_BIN (build it: CARGO_TARGET_DIR=$ROOT/target-bench cargo build --release -p restash)"

DATA_DIR=$BENCH_DIR/data
WORK_DIR=$BENCH_DIR/wan-work
LOG_DIR=$BENCH_DIR/wan-logs
SRC=$DATA_DIR/wan
rm -rf "$WORK_DIR" "$LOG_DIR"
mkdir -p "$DATA_DIR" "$WORK_DIR" "$LOG_DIR" "$(dirname "$OUT_CSV")" "$(dirname "$OUT_MD")"
fstype=$(stat -f -c %T "$BENCH_DIR" 2>/dev/null || echo unknown)
[ "$fstype" = tmpfs ] || note "warning: $BENCH_DIR is on $fstype, not tmpfs"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------------------- dataset

BIG_BYTES=$(python3 -c "print(int(314572800 * float('$SCALE')) // 3 * 3)")
SMALL_FILES=$(python3 -c "print(max(1, round(5000 * float('$SCALE'))))")
MOUNT_FILES=${MOUNT_FILES:-$(python3 -c "print(max(1, round(100000 * float('$SCALE'))))")}
if [ -z "${MOUNT_FILE:-}" ]; then
    MOUNT_FILE=d07/f000007.txt
    if [ "$MOUNT_FILES" -gt 54342 ]; then MOUNT_FILE=d42/f054342.txt; fi
fi
MOUNT_SRC=$DATA_DIR/mount

# Deterministic pseudo-random bytes (as in run.sh): AES-256-CTR keystream under a key
# derived from the seed, else Python's seeded Mersenne Twister.
gen_stream() { # SEED BYTES > file
    local seed=$1 n=$2
    if command -v openssl >/dev/null; then
        local key
        key=$(printf '%s' "$seed" | sha256sum | cut -c1-64)
        { openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 \
            </dev/zero 2>/dev/null || true; } | head -c "$n"
    else
        python3 - "$seed" "$n" <<'EOF'
import random, sys
rng = random.Random(sys.argv[1]); left = int(sys.argv[2]); out = sys.stdout.buffer
while left > 0:
    k = min(left, 1 << 20); out.write(rng.getrandbits(8 * k).to_bytes(k, "little")); left -= k
EOF
    fi
}

gen_wan() {
    local stamp="wan v1 bytes=$BIG_BYTES files=$SMALL_FILES"
    if [ "$REGEN" != 1 ] && [ -f "$DATA_DIR/wan.stamp" ] && [ "$(cat "$DATA_DIR/wan.stamp")" = "$stamp" ]; then
        return
    fi
    note "generating dataset: $BIG_BYTES bytes in 3 files + $SMALL_FILES small files"
    rm -rf "$SRC" "$DATA_DIR/wan.stamp"
    mkdir -p "$SRC/big" "$SRC/small"
    local i
    for i in 0 1 2; do
        gen_stream "restash-bench-wan-$i" $((BIG_BYTES / 3)) >"$SRC/big/random-$i.bin"
    done
    gen_small_files "$SRC/small" "$SMALL_FILES"
    echo "$stamp" >"$DATA_DIR/wan.stamp"
}

gen_small_files() { # DIR COUNT: the same generator as run.sh's `small` dataset
    python3 - "$1" "$2" <<'EOF'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(0x5EED)
dirs = min(100, count)
for d in range(dirs):
    os.mkdir(os.path.join(root, f"d{d:02d}"))
for i in range(count):
    size = rng.randint(1024, 8192)
    body = rng.getrandbits(4 * size).to_bytes((size + 1) // 2, "little").hex()[:size]
    with open(os.path.join(root, f"d{i % dirs:02d}", f"f{i:06d}.txt"), "w") as f:
        f.write(body)
EOF
}

gen_mount() {
    local stamp="mount v1 files=$MOUNT_FILES"
    if [ "$REGEN" != 1 ] && [ -f "$DATA_DIR/mount.stamp" ] && [ "$(cat "$DATA_DIR/mount.stamp")" = "$stamp" ]; then
        return
    fi
    note "generating the mount dataset: $MOUNT_FILES small files"
    rm -rf "$MOUNT_SRC" "$DATA_DIR/mount.stamp"
    mkdir -p "$MOUNT_SRC"
    gen_small_files "$MOUNT_SRC" "$MOUNT_FILES"
    echo "$stamp" >"$DATA_DIR/mount.stamp"
}

if [ -n "$VARIANTS" ]; then
    gen_wan
    [ -f "$SRC/$ONE_FILE" ] || die "ONE_FILE $ONE_FILE is not in the dataset (smaller SCALE? set ONE_FILE)"
fi
if [ "$MOUNT" = 1 ]; then
    gen_mount
    [ -f "$MOUNT_SRC/$MOUNT_FILE" ] || die "MOUNT_FILE $MOUNT_FILE is not in the mount dataset (set MOUNT_FILE)"
fi

# ---------------------------------------------------------------------- server, proxy

PIDS=()
S3_DIR=""
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$S3_DIR" ]; then
        bash "$ROOT/scripts/s3-server.sh" stop "$S3_DIR" || true
        rm -rf "$S3_DIR"
    fi
}
trap cleanup EXIT

if [ -z "${S3_URL:-}" ]; then
    S3_DIR=$BENCH_DIR/wan-seaweedfs
    s3_port=$(free_port)
    rm -rf "$S3_DIR"
    bash "$ROOT/scripts/s3-server.sh" start "$S3_DIR" "$s3_port"
    S3_URL=s3:http://127.0.0.1:$s3_port
    export AWS_ACCESS_KEY_ID=testkey AWS_SECRET_ACCESS_KEY=testsecret
fi
[ -n "${AWS_ACCESS_KEY_ID:-}" ] || die "S3_URL needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
UPSTREAM=${S3_URL#s3:http://}
UPSTREAM=${UPSTREAM%%/*}

REQ_LOG=""
wait_listen() { # PORT PID LOG
    for _ in $(seq 200); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),1)" 2>/dev/null; then return 0; fi
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; die "proxy exited"; }
        sleep 0.1
    done
    cat "$3" >&2
    die "proxy does not listen on $1"
}

case $WAN_PROXY in
    none) REPO_BASE=$S3_URL ;;
    delay)
        pport=$(free_port)
        REQ_LOG=$LOG_DIR/requests.log
        : >"$REQ_LOG"
        python3 "$SCRIPT_DIR/wan-proxy.py" "$pport" "$UPSTREAM" "$WAN_MIN_MS" "$WAN_MAX_MS" "$REQ_LOG" \
            </dev/null >"$LOG_DIR/proxy.log" 2>&1 &
        PIDS+=($!)
        wait_listen "$pport" "$!" "$LOG_DIR/proxy.log"
        REPO_BASE=s3:http://127.0.0.1:$pport
        ;;
    fault-latency | fault-jitter)
        fault=$(bash "$ROOT/scripts/s3-server.sh" fault-bin)
        pport=$(free_port)
        if [ "$WAN_PROXY" = fault-latency ]; then
            chain="          - type: latency
            flow: both
            distribution:
              type: uniform
              min_ms: $WAN_MIN_MS.0
              max_ms: $WAN_MAX_MS.0"
        else
            chain="          - type: jitter
            flow: both
            min_delay_ms: $WAN_MIN_MS
            max_delay_ms: $WAN_MAX_MS
            probability: 1.0"
        fi
        cat >"$LOG_DIR/fault.yaml" <<EOF
schema_version: 1
name: restash wan bench
proxies:
  - name: s3
    protocol: tcp
    listen: 127.0.0.1:$pport
    upstream: $UPSTREAM
phases:
  - name: wan
    proxies:
      - proxy: s3
        faults:
$chain
EOF
        "$fault" --output json --color never run "$LOG_DIR/fault.yaml" --journal "$LOG_DIR/fault-journal.ndjson" \
            </dev/null >"$LOG_DIR/proxy.log" 2>&1 &
        PIDS+=($!)
        wait_listen "$pport" "$!" "$LOG_DIR/proxy.log"
        REPO_BASE=s3:http://127.0.0.1:$pport
        ;;
    *) die "WAN_PROXY must be delay, fault-latency, fault-jitter or none" ;;
esac

# -------------------------------------------------------------------------- measuring

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
echo "run_id,variant,run,step,status,wall_s,user_s,sys_s,maxrss_kib,requests,connections,by_method,check" >"$OUT_CSV"

req_lines() { if [ -n "$REQ_LOG" ]; then wc -l <"$REQ_LOG"; else echo 0; fi; }

# Requests in lines FROM+1..TO of the request log: "total,connections,METHOD=n;...".
req_summary() { # FROM TO
    if [ -z "$REQ_LOG" ]; then echo ",,"; return; fi
    sed -n "$(($1 + 1)),$2p" "$REQ_LOG" | python3 -c '
import collections, sys
c = collections.Counter(); conns = 0; unparsed = 0
for line in sys.stdin:
    f = line.split()
    if len(f) < 3: continue
    m = f[2]
    if m == "CONNECT": conns += 1; continue
    if m == "UNPARSED": unparsed += 1; continue
    if m == "CLOSE": continue
    path = f[3] if len(f) > 3 else ""
    p, _, q = path.partition("?")
    # A GET of the bucket itself (or with list parameters) lists objects.
    if m == "GET" and (p.strip("/").count("/") == 0 or "list-type" in q or "prefix" in q.split("&")):
        m = "LIST"
    c[m] += 1
detail = ";".join(f"{k}={v}" for k, v in sorted(c.items()))
if unparsed: detail += f";UNPARSED={unparsed}"
print(f"{sum(c.values())},{conns},{detail}")
'
}

csv() { local IFS=,; echo "$*" >>"$OUT_CSV"; }

# measure VARIANT RUN STEP cmd... ; sets STATUS and appends a CSV row (CHECK from the caller).
measure() {
    local variant=$1 run=$2 step=$3
    shift 3
    local log=$LOG_DIR/$variant-run$run-$step.log tf=$WORK_DIR/time.out rc=0 before after
    before=$(req_lines)
    $TIME -f '%e %U %S %M' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    after=$(req_lines)
    local wall="" user="" sys="" rss=""
    if [ "$rc" = 0 ]; then
        STATUS=ok
        read -r wall user sys rss < <(tail -n1 "$tf")
    else
        STATUS=FAILED
        note "$variant $step (run $run) FAILED (exit $rc); log: $log"
        tail -n5 "$log" | sed 's/^/    /' >&2
    fi
    csv "$RUN_ID" "$variant" "$run" "$step" "$STATUS" "$wall" "$user" "$sys" "$rss" \
        "$(req_summary "$before" "$after")" "${CHECK:-}"
    note "  $variant $step: $STATUS ${wall:+${wall}s}"
}

# Sets CMD to the argv prefix of VARIANT for its next command (a cold variant gets a new
# empty cache dir each time).
variant_cmd() { # VARIANT REPO
    local v=$1 repo=$2
    case $v in
        restic-warm) CMD=("$RESTIC_BIN" -r "$repo" -q --cache-dir "$WORK_DIR/cache-$v") ;;
        restic-nocache) CMD=("$RESTIC_BIN" -r "$repo" -q --no-cache) ;;
        restash-warm) CMD=("$RESTASH_BIN" -r "$repo" -q --cache-dir "$WORK_DIR/cache-$v") ;;
        restash-nocache) CMD=("$RESTASH_BIN" -r "$repo" -q --no-cache) ;;
        restash-cold) CMD=("$RESTASH_BIN" -r "$repo" -q --cache-dir "$(mktemp -d "$WORK_DIR/cache-cold.XXXXXX")") ;;
    esac
}

STEPS="backup rebackup snapshots ls restore-one restore"

bench_variant() { # VARIANT RUN
    local v=$1 run=$2 s
    # A bucket per repository: names never repeat across variants, runs and invocations.
    local repo=$REPO_BASE/wan-${RUN_ID,,}-$v-$run
    local target=$WORK_DIR/restore-$v target1=$WORK_DIR/restore-one-$v
    rm -rf "$target" "$target1" "$WORK_DIR/cache-$v" "$WORK_DIR"/cache-cold.*
    local -a CMD
    CHECK=""

    variant_cmd "$v" "$repo"
    measure "$v" "$run" init "${CMD[@]}" init
    [ "$STATUS" = ok ] || { for s in $STEPS; do csv "$RUN_ID" "$v" "$run" "$s" skipped; done; return; }
    variant_cmd "$v" "$repo"
    measure "$v" "$run" backup "${CMD[@]}" backup "$SRC"
    [ "$STATUS" = ok ] || { for s in ${STEPS#backup }; do csv "$RUN_ID" "$v" "$run" "$s" skipped; done; return; }
    variant_cmd "$v" "$repo"
    measure "$v" "$run" rebackup "${CMD[@]}" backup "$SRC"
    variant_cmd "$v" "$repo"
    measure "$v" "$run" snapshots "${CMD[@]}" snapshots
    variant_cmd "$v" "$repo"
    measure "$v" "$run" ls "${CMD[@]}" ls latest
    if [ "$STATUS" = ok ]; then
        # Every source entry below SRC must be listed (the path prefix up to SRC too).
        local want got
        want=$(find "$SRC" -mindepth 1 | wc -l)
        got=$(grep -c "^$SRC/" "$LOG_DIR/$v-run$run-ls.log" || true)
        if [ "$got" -ne "$want" ]; then note "$v ls latest: $got entries under $SRC, expected $want"; fi
        CHECK="$got/$want entries" set_last_check
    fi

    # One file to stdout, and the web view (restash only): its first page, then the page
    # and one download, each from a fresh start of `serve` (serve-get.py checks the bytes).
    variant_cmd "$v" "$repo"
    measure "$v" "$run" dump-one "${CMD[@]}" dump latest "$SRC/$ONE_FILE"
    if [ "$STATUS" = ok ]; then
        if cmp -s "$SRC/$ONE_FILE" "$LOG_DIR/$v-run$run-dump-one.log"; then CHECK=identical; else CHECK=MISMATCH; fi
        set_last_check
    fi
    case $v in
        restash-*)
            variant_cmd "$v" "$repo"
            measure "$v" "$run" serve-page python3 "$SCRIPT_DIR/serve-get.py" -- "${CMD[@]}" serve
            variant_cmd "$v" "$repo"
            CHECK=""
            measure "$v" "$run" serve-download python3 "$SCRIPT_DIR/serve-get.py" \
                --file "$SRC/$ONE_FILE" --expect "$SRC/$ONE_FILE" -- "${CMD[@]}" serve
            if [ "$STATUS" = ok ]; then CHECK=identical set_last_check; fi
            ;;
    esac

    mkdir -p "$target1"
    variant_cmd "$v" "$repo"
    measure "$v" "$run" restore-one "${CMD[@]}" restore latest --target "$target1" --include "$SRC/$ONE_FILE"
    if [ "$STATUS" = ok ]; then
        local files check
        files=$(find "$target1" -type f | wc -l)
        if [ "$files" = 1 ] && cmp -s "$SRC/$ONE_FILE" "$(find "$target1" -type f)"; then
            check=identical
        else
            check="MISMATCH ($files files)"
            note "$v restore one file: $files files restored, or content differs (in $target1)"
        fi
        CHECK=$check set_last_check
    fi

    mkdir -p "$target"
    variant_cmd "$v" "$repo"
    measure "$v" "$run" restore "${CMD[@]}" restore latest --target "$target"
    if [ "$STATUS" = ok ]; then
        local got=$target
        if [ -d "$target$SRC" ]; then got=$target$SRC; elif [ -d "$target/wan" ]; then got=$target/wan; fi
        local diffs
        diffs=$(diff -r -q "$SRC" "$got" 2>&1 | wc -l || true)
        if [ "$diffs" = 0 ]; then CHECK=identical; else
            CHECK="$diffs mismatches"
            note "$v full restore: $diffs mismatches (diff -r -q $SRC $got)"
        fi
        set_last_check
    fi

    if [ "$KEEP" != 1 ]; then rm -rf "$target" "$target1" "$WORK_DIR/cache-$v" "$WORK_DIR"/cache-cold.*; fi
}

# Writes $CHECK into the last CSV row's check field.
set_last_check() {
    python3 - "$OUT_CSV" "$CHECK" <<'EOF'
import sys
path, value = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines()
f = lines[-1].split(",")
f[-1] = value
lines[-1] = ",".join(f)
open(path, "w").write("\n".join(lines) + "\n")
EOF
}

# The mount dataset, backed up once by restic straight to the server (see the header).
MOUNT_BUCKET=wan-${RUN_ID,,}-mount
mount_setup() {
    local direct=${S3_URL%/}/$MOUNT_BUCKET
    CHECK=""
    measure mount-setup 1 init "$RESTIC_BIN" -r "$direct" -q --no-cache init
    [ "$STATUS" = ok ] || return 1
    measure mount-setup 1 backup "$RESTIC_BIN" -r "$direct" -q --no-cache backup "$MOUNT_SRC"
    [ "$STATUS" = ok ] || return 1
}

# The mount step of one run: each tool mounts the dataset through the link, cold and warm.
bench_mount() { # RUN
    local run=$1 tool phase line rc before after
    local linked=$REPO_BASE/$MOUNT_BUCKET mnt=$WORK_DIR/mnt
    local rel=${MOUNT_SRC#/}/$MOUNT_FILE
    mkdir -p "$mnt"
    for tool in $MOUNT_TOOLS; do
        local bin=$RESTIC_BIN cache=$WORK_DIR/mount-cache-$tool
        if [ "$tool" = restash ]; then bin=$RESTASH_BIN; fi
        rm -rf "$cache"
        for phase in cold warm; do
            local log=$LOG_DIR/$tool-mount-run$run-$phase.log
            before=$(req_lines)
            rc=0
            line=$(python3 "$SCRIPT_DIR/mount-cat.py" "$mnt" "snapshots/latest/$rel" "$MOUNT_SRC/$MOUNT_FILE" "$log" -- \
                "$bin" -r "$linked" --cache-dir "$cache" mount "$mnt") || rc=$?
            after=$(req_lines)
            local wall user sys rss code check
            read -r wall user sys rss code check <<<"$line"
            STATUS=ok
            if [ "$rc" != 0 ]; then
                STATUS=FAILED
                note "$tool mount-$phase (run $run) FAILED: $line; log: $log"
                tail -n5 "$log" | sed 's/^/    /' >&2
            fi
            csv "$RUN_ID" "$tool-mount" "$run" "mount-$phase" "$STATUS" "$wall" "$user" "$sys" "$rss" \
                "$(req_summary "$before" "$after")" "${check//_/ } (exit $code)"
            note "  $tool mount-$phase: $STATUS ${wall:+${wall}s}"
        done
        if [ "$KEEP" != 1 ]; then rm -rf "$cache"; fi
    done
}

# Measured cost of a round trip through the proxy: 20 keep-alive requests over one
# connection (the first also pays the connect), then 10 new connections.
probe_rtt() {
    python3 - "${REPO_BASE#s3:http://}" <<'EOF'
import http.client, sys, time
host, port = sys.argv[1].split(":")
def req(c):
    t = time.monotonic(); c.request("GET", "/"); c.getresponse().read(); return (time.monotonic() - t) * 1000
c = http.client.HTTPConnection(host, int(port), timeout=30)
first = req(c)
keep = sorted(req(c) for _ in range(20))
new = []
for _ in range(10):
    c = http.client.HTTPConnection(host, int(port), timeout=30); new.append(req(c)); c.close()
new.sort()
print(f"keep-alive request median {keep[10]:.1f} ms (min {keep[0]:.1f}, max {keep[-1]:.1f}); "
      f"request on a new connection median {new[5]:.1f} ms")
EOF
}
RTT=$(probe_rtt)
note "proxy $WAN_PROXY: $RTT"

if [ "$MOUNT" = 1 ]; then
    note "mount setup: restic backs up $MOUNT_FILES files straight to the server"
    mount_setup || MOUNT=0
fi
for run in $(seq 1 "$RUNS"); do
    for v in $VARIANTS; do
        note "$v run $run/$RUNS"
        bench_variant "$v" "$run"
    done
    if [ "$MOUNT" = 1 ]; then
        note "mount run $run/$RUNS"
        bench_mount "$run"
    fi
done

# ------------------------------------------------------------------------------ report

{
    echo "## restash WAN benchmark ($RUN_ID)"
    echo
    echo "- host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- SeaweedFS ($UPSTREAM) behind proxy \`$WAN_PROXY\`, ${WAN_MIN_MS}-${WAN_MAX_MS} ms each way; measured: $RTT"
    echo "- data on $fstype (SCALE=$SCALE): $BIG_BYTES bytes of random data in 3 files + $SMALL_FILES files of 1-8 KiB hex text; restore one file: $ONE_FILE"
    if [ "$MOUNT" = 1 ]; then
        echo "- mount: $MOUNT_FILES files of 1-8 KiB in 100 dirs ($MOUNT_SRC), backed up by restic straight to SeaweedFS; mounted through the proxy by $MOUNT_TOOLS; the file read: $MOUNT_FILE; cold: an empty --cache-dir, warm: the same dir again"
    fi
    echo "- restic: $("$RESTIC_BIN" version | head -n1); restash: $("$RESTASH_BIN" --version | head -n1)"
    echo "- each variant has its own bucket and runs init + the steps below in order; warm: one --cache-dir for the sequence; cold: a new empty --cache-dir per command"
    echo "- best of $RUNS run(s), wall seconds; ratios < 1 favour restash"
    echo
} >"$OUT_MD"

python3 - "$OUT_CSV" "$VARIANTS" >>"$OUT_MD" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
variants = sys.argv[2].split()
steps = [("backup", "first backup"), ("rebackup", "no-change re-backup"), ("snapshots", "`snapshots`"),
         ("ls", "`ls latest`"), ("dump-one", "`dump` one file"),
         ("serve-page", "web view: start, first page"),
         ("serve-download", "web view: start, page, one download"),
         ("restore-one", "restore one file"), ("restore", "full restore")]
names = {"restic-warm": "restic warm", "restic-nocache": "restic --no-cache",
         "restash-cold": "restash cold", "restash-warm": "restash warm",
         "restash-nocache": "restash --no-cache"}

def best(v, step):
    rs = [r for r in rows if r["variant"] == v and r["step"] == step]
    ok = [r for r in rs if r["status"] == "ok"]
    if ok:
        return min(ok, key=lambda r: float(r["wall_s"]))
    return rs[0]["status"] if rs else None

def wall(v, step):
    r = best(v, step)
    return float(r["wall_s"]) if isinstance(r, dict) else None

def fmt(v, step):
    r = best(v, step)
    if r is None: return "n/a"
    if not isinstance(r, dict): return r
    return f"{float(r['wall_s']):.2f}"

def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "–"

ratios = []
if "restash-warm" in variants and "restic-warm" in variants:
    ratios.append(("restash warm / restic warm", "restash-warm", "restic-warm"))
if "restash-cold" in variants and "restic-nocache" in variants:
    ratios.append(("restash cold / restic --no-cache", "restash-cold", "restic-nocache"))

def check(v, step):
    r = best(v, step)
    return r["check"] if isinstance(r, dict) else "–"

def requests(r):
    if not isinstance(r, dict) or not r["requests"]:
        return "–"
    detail = r["by_method"].replace(";", " ").replace("=", " ")
    return f"{r['requests']} / {r['connections']} ({detail})"

if variants:
    head = ["step"] + [names[v] for v in variants] + [r[0] for r in ratios]
    print("| " + " | ".join(head) + " |")
    print("|---|" + "|".join("---:" for _ in head[1:]) + "|")
    for step, label in steps:
        line = [label] + [fmt(v, step) for v in variants]
        line += [ratio(wall(a, step), wall(b, step)) for _, a, b in ratios]
        print("| " + " | ".join(line) + " |")
    for step, label in [("ls", "check: `ls latest` entries"), ("restore-one", "check: one file (cmp)"),
                        ("restore", "check: full restore (diff -r)")]:
        print("| " + " | ".join([label] + [check(v, step) for v in variants] + ["" for _ in ratios]) + " |")

if variants and any(r["requests"] for r in rows):
    print()
    print("HTTP requests / new connections per step (from the best run; LIST = GET of the bucket with list parameters):")
    print()
    print("| step | " + " | ".join(names[v] for v in variants) + " |")
    print("|---|" + "|".join("---:" for _ in variants) + "|")
    for step, label in [("init", "init")] + steps:
        print("| " + " | ".join([label] + [requests(best(v, step)) for v in variants]) + " |")

tools = [t for t in ("restic", "restash") if any(r["variant"] == f"{t}-mount" for r in rows)]
if tools:
    print()
    print("Mount: seconds from starting `mount` to one file read through it (best of the runs), "
          "user+sys CPU s and peak RSS MiB of the mount process, and its HTTP requests / new connections:")
    print()
    head = ["cache"] + [f"{t}" for t in tools]
    both = tools == ["restic", "restash"]
    if both:
        head.append("restash / restic")
    print("| " + " | ".join(head) + " |")
    print("|---|" + "|".join("---:" for _ in head[1:]) + "|")
    for phase in ("cold", "warm"):
        step = f"mount-{phase}"
        line = [f"{phase}: to the file read"] + [fmt(f"{t}-mount", step) for t in tools]
        if both:
            line.append(ratio(wall("restash-mount", step), wall("restic-mount", step)))
        print("| " + " | ".join(line) + " |")
        def cpu(r):
            if not isinstance(r, dict) or r["status"] != "ok":
                return "–"
            return f"{float(r['user_s']) + float(r['sys_s']):.2f} s, {int(r['maxrss_kib']) / 1024:.0f} MiB"
        line = [f"{phase}: CPU, RSS"] + [cpu(best(f"{t}-mount", step)) for t in tools]
        print("| " + " | ".join(line + ([""] if both else [])) + " |")
        line = [f"{phase}: requests"] + [requests(best(f"{t}-mount", step)) for t in tools]
        print("| " + " | ".join(line + ([""] if both else [])) + " |")
        line = [f"{phase}: check"] + [check(f"{t}-mount", step) for t in tools]
        print("| " + " | ".join(line + ([""] if both else [])) + " |")
EOF

{
    echo
    echo "CSV: $OUT_CSV; logs: $LOG_DIR"
} >>"$OUT_MD"
cat "$OUT_MD"
