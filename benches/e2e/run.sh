#!/usr/bin/env bash
# End-to-end benchmark: restash against restic (and rustic when installed) on seeded
# datasets on tmpfs. For each tool and dataset: a fresh `init`, then `backup`, a
# no-change re-`backup` and a `restore` into a fresh directory that is compared with the
# source by `diff -r -q`; a `snapshots` call shows each command's fixed cost. Each step
# runs under `/usr/bin/time -f '%e %U %S %M'`.
#
# Prints a markdown table to stdout and writes a CSV (and the same table) next to it.
# A tool's failure is recorded as FAILED in its cells; the run goes on.
#
# Environment (all optional):
#   BENCH_DIR     working directory, on tmpfs          [/dev/shm/restash-bench]
#   SCALE         dataset scale factor (0.1 = quick)   [1]
#                   big:   1 GiB × SCALE of random data in 4 files
#                   small: 100,000 × SCALE files of 1–8 KiB (hex text) in 100 dirs
#   DATASETS      which datasets, in order             ["big small"]
#   TOOLS         which tools, in order                ["restash restic rustic"]
#   RUNS          repetitions; the table shows the best (minimum) of each figure   [1]
#   RESTASH_BIN   [<workspace>/target/release/restash]
#   RESTIC_BIN    [/usr/bin/restic]
#   RUSTIC_BIN    [`rustic` on PATH, else <workspace>/target-bench/rustic/bin/rustic]
#   USE_CACHE     0: every tool runs with --no-cache (restash keeps no cache at all);
#                 1: restic/rustic get a fresh --cache-dir under BENCH_DIR per repo  [0]
#   RESTIC_PASSWORD  repository password for all tools  [restash-bench]
#   OUT_CSV / OUT_MD  result files                      [$BENCH_DIR/results.{csv,md}]
#   REPO_KIND     local: repositories in BENCH_DIR; s3: on an S3 server (buckets named
#                 after the run), for the "to SeaweedFS on loopback" figures   [local]
#   S3_URL        with REPO_KIND=s3: `s3:http://HOST:PORT` of a running server with
#                 AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY set; unset: SeaweedFS is started
#                 by scripts/s3-server.sh with its data under BENCH_DIR, and stopped after
#   KEEP          1: keep repositories and restores     [0]
#   REGEN         1: regenerate the datasets even if present  [0]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

BENCH_DIR=${BENCH_DIR:-/dev/shm/restash-bench}
SCALE=${SCALE:-1}
DATASETS=${DATASETS:-"big small"}
TOOLS=${TOOLS:-"restash restic rustic"}
RUNS=${RUNS:-1}
RESTASH_BIN=${RESTASH_BIN:-$ROOT/target/release/restash}
RESTIC_BIN=${RESTIC_BIN:-/usr/bin/restic}
USE_CACHE=${USE_CACHE:-0}
OUT_CSV=${OUT_CSV:-$BENCH_DIR/results.csv}
OUT_MD=${OUT_MD:-$BENCH_DIR/results.md}
KEEP=${KEEP:-0}
REGEN=${REGEN:-0}
REPO_KIND=${REPO_KIND:-local}
export RESTIC_PASSWORD=${RESTIC_PASSWORD:-restash-bench}
export RUSTIC_PASSWORD=$RESTIC_PASSWORD
# Neither restic nor rustic should pick up a repository or profile from the caller.
unset RESTIC_REPOSITORY RESTIC_REPOSITORY_FILE RESTIC_PASSWORD_FILE RESTIC_PASSWORD_COMMAND \
    RUSTIC_REPOSITORY 2>/dev/null || true
TIME=/usr/bin/time

if [ -z "${RUSTIC_BIN:-}" ]; then
    RUSTIC_BIN=$(command -v rustic 2>/dev/null || true)
    if [ -z "$RUSTIC_BIN" ] && [ -x "$ROOT/target-bench/rustic/bin/rustic" ]; then
        RUSTIC_BIN=$ROOT/target-bench/rustic/bin/rustic
    fi
fi

die() { echo "run.sh: $*" >&2; exit 1; }
note() { echo "run.sh: $*" >&2; }

[ -x "$TIME" ] || die "$TIME (GNU time) is required"
command -v python3 >/dev/null || die "python3 is required"
case $RUNS in '' | *[!0-9]* | 0) die "RUNS must be a positive integer" ;; esac

DATA_DIR=$BENCH_DIR/data
WORK_DIR=$BENCH_DIR/work
LOG_DIR=$BENCH_DIR/logs
mkdir -p "$DATA_DIR" "$WORK_DIR" "$LOG_DIR" "$(dirname "$OUT_CSV")" "$(dirname "$OUT_MD")"

case $REPO_KIND in
    local) ;;
    s3)
        if [ -z "${S3_URL:-}" ]; then
            s3_dir=$BENCH_DIR/seaweedfs
            s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
            rm -rf "$s3_dir"
            bash "$ROOT/scripts/s3-server.sh" start "$s3_dir" "$s3_port"
            trap 'bash "$ROOT/scripts/s3-server.sh" stop "$s3_dir"; rm -rf "$s3_dir"' EXIT
            S3_URL=s3:http://127.0.0.1:$s3_port
            export AWS_ACCESS_KEY_ID=testkey AWS_SECRET_ACCESS_KEY=testsecret
        fi
        [ -n "${AWS_ACCESS_KEY_ID:-}" ] || die "REPO_KIND=s3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ;;
    *) die "REPO_KIND must be local or s3" ;;
esac

fstype=$(stat -f -c %T "$BENCH_DIR" 2>/dev/null || echo unknown)
[ "$fstype" = tmpfs ] || note "warning: $BENCH_DIR is on $fstype, not tmpfs: disk caches will skew results"

# Sizes at this SCALE.
BIG_BYTES=$(python3 -c "print(int(1073741824 * float('$SCALE')) // 4 * 4)")
SMALL_FILES=$(python3 -c "print(max(1, round(100000 * float('$SCALE'))))")

# ---------------------------------------------------------------------------- datasets

# Deterministic pseudo-random bytes: AES-256-CTR keystream under a key derived from the
# seed (openssl), else Python's seeded Mersenne Twister.
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

gen_big() {
    local dir=$DATA_DIR/big stamp="big v1 bytes=$BIG_BYTES"
    if [ "$REGEN" != 1 ] && [ -f "$DATA_DIR/big.stamp" ] && [ "$(cat "$DATA_DIR/big.stamp")" = "$stamp" ]; then
        return
    fi
    note "generating big: $BIG_BYTES bytes in 4 files"
    rm -rf "$dir" "$DATA_DIR/big.stamp"
    mkdir -p "$dir"
    local i
    for i in 0 1 2 3; do
        gen_stream "restash-bench-big-$i" $((BIG_BYTES / 4)) >"$dir/random-$i.bin"
    done
    echo "$stamp" >"$DATA_DIR/big.stamp"
}

gen_small() {
    local dir=$DATA_DIR/small stamp="small v1 files=$SMALL_FILES"
    if [ "$REGEN" != 1 ] && [ -f "$DATA_DIR/small.stamp" ] && [ "$(cat "$DATA_DIR/small.stamp")" = "$stamp" ]; then
        return
    fi
    note "generating small: $SMALL_FILES files of 1-8 KiB in 100 directories"
    rm -rf "$dir" "$DATA_DIR/small.stamp"
    mkdir -p "$dir"
    python3 - "$dir" "$SMALL_FILES" <<'EOF'
import os, random, sys
root, count = sys.argv[1], int(sys.argv[2])
rng = random.Random(0x5EED)
dirs = min(100, count)
for d in range(dirs):
    os.mkdir(os.path.join(root, f"d{d:02d}"))
for i in range(count):
    size = rng.randint(1024, 8192)
    # Hex text: compresses about 2x, so zstd does real work; no two files are alike.
    body = rng.getrandbits(4 * size).to_bytes((size + 1) // 2, "little").hex()[:size]
    with open(os.path.join(root, f"d{i % dirs:02d}", f"f{i:06d}.txt"), "w") as f:
        f.write(body)
EOF
    echo "$stamp" >"$DATA_DIR/small.stamp"
}

# ------------------------------------------------------------------------------- tools

tool_bin() {
    case $1 in
        restash) echo "$RESTASH_BIN" ;;
        restic) echo "$RESTIC_BIN" ;;
        rustic) echo "${RUSTIC_BIN:-}" ;;
        *) die "unknown tool $1" ;;
    esac
}

tool_version() {
    local bin
    bin=$(tool_bin "$1")
    case $1 in
        restic) "$bin" version 2>/dev/null | head -n1 || echo "?" ;;
        restash | rustic) "$bin" --version 2>/dev/null | head -n1 || echo "?" ;;
    esac
}

# Sets CMD to the tool's argv prefix for repository REPO (global flags included).
tool_base() { # TOOL REPO CACHE_DIR
    local tool=$1 repo=$2 cache=$3 bin
    bin=$(tool_bin "$tool")
    local cacheflags=(--no-cache)
    if [ "$USE_CACHE" = 1 ]; then cacheflags=(--cache-dir "$cache"); fi
    case $tool in
        restash | restic) CMD=("$bin" -r "$repo" -q "${cacheflags[@]}") ;;
        rustic) CMD=("$bin" -r "$repo" --no-progress "${cacheflags[@]}") ;;
    esac
}

# Where a restore of SRC into TARGET put SRC's contents: tools restore the absolute path
# under the target (restic), or the top directory only, or the contents directly.
restored_dir() { # TARGET SRC
    local target=$1 src=$2
    if [ -d "$target$src" ]; then
        echo "$target$src"
    elif [ -d "$target/$(basename "$src")" ]; then
        echo "$target/$(basename "$src")"
    else
        echo "$target"
    fi
}

# scrypt parameters of the repository's key file: every command pays for one derivation.
kdf_params() { # REPO
    python3 - "$1" <<'EOF' 2>/dev/null || echo "?"
import json, os, sys
d = os.path.join(sys.argv[1], "keys")
k = json.load(open(os.path.join(d, sorted(os.listdir(d))[0])))
print(f"N={k['N']} r={k['r']} p={k['p']}")
EOF
}

# -------------------------------------------------------------------------- measuring

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
echo "run_id,dataset,tool,run,step,status,wall_s,user_s,sys_s,cpu_s,maxrss_kib,repo_bytes,mismatches,kdf" >"$OUT_CSV"

csv() { # fields...
    local IFS=,
    echo "$*" >>"$OUT_CSV"
}

# measure DATASET TOOL RUN STEP cmd... ; sets STATUS and appends a CSV row (extra fields
# REPO_BYTES, MISMATCHES, KDF are read from the caller's variables).
measure() {
    local ds=$1 tool=$2 run=$3 step=$4
    shift 4
    local log=$LOG_DIR/$ds-$tool-run$run-$step.log tf=$WORK_DIR/time.out rc=0
    $TIME -f '%e %U %S %M' -o "$tf" "$@" >"$log" 2>&1 || rc=$?
    local wall="" user="" sys="" rss="" cpu=""
    if [ "$rc" = 0 ]; then
        STATUS=ok
        read -r wall user sys rss < <(tail -n1 "$tf")
        cpu=$(python3 -c "print(f'{$user + $sys:.2f}')")
    else
        STATUS=FAILED
        note "$tool $step on $ds (run $run) FAILED (exit $rc); log: $log"
        tail -n5 "$log" | sed 's/^/    /' >&2
    fi
    csv "$RUN_ID" "$ds" "$tool" "$run" "$step" "$STATUS" "$wall" "$user" "$sys" "$cpu" "$rss" \
        "${REPO_BYTES:-}" "${MISMATCHES:-}" "${KDF:-}"
}

# Fills field N (0-based) of the CSV's last row, known only after the step was measured.
set_last_field() { # N VALUE
    python3 - "$OUT_CSV" "$1" "$2" <<'EOF'
import sys
path, n, value = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = open(path).read().splitlines()
f = lines[-1].split(",")
f[n] = value
lines[-1] = ",".join(f)
open(path, "w").write("\n".join(lines) + "\n")
EOF
}

skip() { # DATASET TOOL RUN STEP
    csv "$RUN_ID" "$1" "$2" "$3" "$4" skipped "" "" "" "" "" "" "" ""
}

bench_tool() { # DATASET TOOL RUN
    local ds=$1 tool=$2 run=$3 src=$DATA_DIR/$1
    local repo=$WORK_DIR/repo-$tool-$ds target=$WORK_DIR/restore-$tool-$ds cache=$WORK_DIR/cache-$tool-$ds
    if [ "$REPO_KIND" = s3 ]; then
        # A bucket per repository: S3 has no rm -rf, and names never repeat across runs.
        repo=$S3_URL/bench-${RUN_ID,,}-$tool-$ds-$run
    fi
    if [ "$REPO_KIND" = local ]; then rm -rf "$repo"; fi
    rm -rf "$target" "$cache"
    REPO_BYTES="" MISMATCHES="" KDF=""
    local -a CMD
    tool_base "$tool" "$repo" "$cache"

    measure "$ds" "$tool" "$run" init "${CMD[@]}" init
    if [ "$STATUS" != ok ]; then
        for s in backup rebackup snapshots restore; do skip "$ds" "$tool" "$run" "$s"; done
        return
    fi
    if [ "$REPO_KIND" = local ]; then KDF=$(kdf_params "$repo"); fi

    # Capture the repository size in the backup row: measure after the fact, then patch.
    measure "$ds" "$tool" "$run" backup "${CMD[@]}" backup "$src"
    if [ "$STATUS" != ok ]; then
        for s in rebackup snapshots restore; do skip "$ds" "$tool" "$run" "$s"; done
        return
    fi
    REPO_BYTES=$(du -sb "$repo" 2>/dev/null | cut -f1 || true)
    set_last_field 11 "$REPO_BYTES"
    REPO_BYTES=""

    measure "$ds" "$tool" "$run" rebackup "${CMD[@]}" backup "$src"
    # The fixed cost of any command: open the repository (one scrypt derivation with the
    # key file's parameters, read the index) and list snapshots.
    measure "$ds" "$tool" "$run" snapshots "${CMD[@]}" snapshots

    mkdir -p "$target"
    case $tool in
        restash | restic) measure "$ds" "$tool" "$run" restore "${CMD[@]}" restore latest --target "$target" ;;
        rustic) measure "$ds" "$tool" "$run" restore "${CMD[@]}" restore latest "$target" ;;
    esac
    if [ "$STATUS" = ok ]; then
        local got diffs
        got=$(restored_dir "$target" "$src")
        diffs=$(diff -r -q "$src" "$got" 2>&1 | wc -l || true)
        if [ "$diffs" != 0 ]; then
            note "$tool restore of $ds: $diffs mismatches (diff -r -q $src $got)"
            diff -r -q "$src" "$got" 2>&1 | head -n5 | sed 's/^/    /' >&2 || true
        fi
        set_last_field 12 "$diffs"
    fi

    if [ "$KEEP" != 1 ]; then
        if [ "$REPO_KIND" = local ]; then rm -rf "$repo"; fi
        rm -rf "$target" "$cache"
    fi
}

# -------------------------------------------------------------------------------- main

active=()
declare -A VERSIONS
for tool in $TOOLS; do
    bin=$(tool_bin "$tool")
    if [ -n "$bin" ] && [ -x "$bin" ]; then
        active+=("$tool")
        VERSIONS[$tool]=$(tool_version "$tool")
    else
        note "$tool not found${bin:+ at $bin}: its columns will say n/a"
        VERSIONS[$tool]="not found"
    fi
done

for ds in $DATASETS; do
    case $ds in
        big) gen_big ;;
        small) gen_small ;;
        *) die "unknown dataset $ds (big, small)" ;;
    esac
done

for ds in $DATASETS; do
    for run in $(seq 1 "$RUNS"); do
        # Tools alternate within each run so that drifting machine load spreads evenly.
        for tool in "${active[@]}"; do
            note "$ds: $tool run $run/$RUNS"
            bench_tool "$ds" "$tool" "$run"
        done
    done
done

# ------------------------------------------------------------------------------ report

{
    echo "## restash end-to-end benchmark ($RUN_ID)"
    echo
    echo "- host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    if [ "$REPO_KIND" = s3 ]; then echo "- repositories on S3 at $S3_URL (one bucket each)"; fi
    echo "- data on $fstype at $BENCH_DIR (SCALE=$SCALE): big = $BIG_BYTES bytes of random data in 4 files; small = $SMALL_FILES files of 1-8 KiB hex text in $((SMALL_FILES < 100 ? SMALL_FILES : 100)) dirs"
    echo "- everything lives in RAM: page caches cannot be dropped, so every run is \"warm\""
    if [ "$USE_CACHE" = 1 ]; then
        echo "- caches: restic/rustic use a fresh --cache-dir per repository (restash keeps none)"
    else
        echo "- caches: all tools run with --no-cache (restash keeps no cache anyway)"
    fi
    echo "- best of $RUNS run(s); wall and CPU (user+sys) in seconds, peak RSS in MiB; ratios < 1 favour restash"
    for tool in $TOOLS; do echo "- $tool: ${VERSIONS[$tool]}"; done
    echo
} >"$OUT_MD"

python3 - "$OUT_CSV" "$TOOLS" "$DATASETS" >>"$OUT_MD" <<'EOF'
import csv, sys
path, tools, datasets = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
rows = list(csv.DictReader(open(path)))
steps = [("backup", "backup"), ("rebackup", "re-backup (no change)"), ("restore", "restore"),
         ("snapshots", "snapshots (repo open)")]
metrics = [("wall_s", "wall s", 1.0), ("cpu_s", "CPU s", 1.0), ("maxrss_kib", "RSS MiB", 1 / 1024)]

def cell(ds, tool, step, field, scale=1.0):
    rs = [r for r in rows if r["dataset"] == ds and r["tool"] == tool and r["step"] == step]
    if not rs:
        return None, "n/a"
    ok = [r for r in rs if r["status"] == "ok" and r[field] != ""]
    if not ok:
        return None, failure(ds, tool, step)
    v = min(float(r[field]) for r in ok) * scale
    return v, (f"{v:.2f}" if v < 100 else f"{v:.0f}")

def failure(ds, tool, step):
    """FAILED, or FAILED (<step>) when an earlier step's failure skipped this one."""
    rs = [r for r in rows if r["dataset"] == ds and r["tool"] == tool]
    if any(r["step"] == step and r["status"] == "FAILED" for r in rs):
        return "FAILED"
    first = [r["step"] for r in rs if r["status"] == "FAILED"]
    return f"FAILED ({first[0]})" if first else "skipped"

def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b not in (None, 0) else "–"

others = [t for t in ("restic", "rustic") if t in tools and "restash" in tools]
head = ["dataset", "step", "metric"] + tools + [f"restash/{t}" for t in others]
print("| " + " | ".join(head) + " |")
print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(head))) + "|")
for ds in datasets:
    for step, label in steps:
        for field, mlabel, scale in metrics:
            vals = {t: cell(ds, t, step, field, scale) for t in tools}
            line = [ds, label, mlabel] + [vals[t][1] for t in tools]
            line += [ratio(vals["restash"][0], vals[t][0]) for t in others]
            print("| " + " | ".join(line) + " |")
    v = {t: cell(ds, t, "backup", "repo_bytes", 1 / 2**20) for t in tools}
    print("| " + " | ".join([ds, "repository", "size MiB"] + [v[t][1] for t in tools]
                            + [ratio(v["restash"][0], v[t][0]) for t in others]) + " |")
    ver = []
    for t in tools:
        rs = [r for r in rows if r["dataset"] == ds and r["tool"] == t and r["step"] == "restore"]
        if not rs:
            ver.append("n/a")
        elif not any(r["status"] == "ok" for r in rs):
            ver.append(failure(ds, t, "restore"))
        else:
            bad = max(int(r["mismatches"] or 0) for r in rs if r["status"] == "ok")
            ver.append("identical" if bad == 0 else f"{bad} mismatches")
    print("| " + " | ".join([ds, "restore", "diff -r -q"] + ver + ["" for _ in others]) + " |")
    kdf = []
    for t in tools:
        ks = {r["kdf"] for r in rows if r["dataset"] == ds and r["tool"] == t and r["kdf"]}
        kdf.append(" / ".join(sorted(ks)) or "n/a")
    print("| " + " | ".join([ds, "key file", "scrypt"] + kdf + ["" for _ in others]) + " |")
EOF

{
    echo
    echo "CSV: $OUT_CSV; logs: $LOG_DIR"
} >>"$OUT_MD"
cat "$OUT_MD"
