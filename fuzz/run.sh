#!/usr/bin/env bash
# Runs one fuzz target with the limits its checks rely on: fuzz/run.sh TARGET [SECONDS].
# New inputs go to fuzz/target/corpus/TARGET (not committed); fuzz/corpus/TARGET holds the
# committed seeds. Crashes land in fuzz/artifacts/TARGET.
set -euo pipefail
cd "$(dirname "$0")"
target=$1
secs=${2:-600}
# A length bound per target so that no legitimate input may need 256 MiB: 2 KiB of zstd
# decompresses to at most 64 MiB.
case $target in
  blob_framing) max_len=2048 ;;
  pack_header | s3_answer) max_len=4096 ;;
  *) max_len=65536 ;;
esac
work=target/corpus/$target
mkdir -p "$work"
exec cargo +nightly fuzz run -O "$target" "$work" "corpus/$target" -- \
  -max_total_time="$secs" -max_len="$max_len" -malloc_limit_mb=256 -rss_limit_mb=1024 \
  -timeout=5 -print_final_stats=1
