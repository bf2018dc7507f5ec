#!/usr/bin/env bash
# A local demo with no server: a sample tree is backed up (with restic until restash's own
# backup lands), then restash lists, browses and restores it, and the result is compared.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p restash -q
bin=$PWD/target/release/restash
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=demo-password RESTIC_REPOSITORY=$work/repo
mkdir -p "$work/src/docs" && echo "hello from restash" > "$work/src/docs/hello.txt"
tar xzf fixtures/restic-testdata/backup-data.tar.gz -C "$work/src"
ln -s docs/hello.txt "$work/src/link"
command -v restic >/dev/null || { echo "restic is needed for the demo backup: apt-get install restic"; exit 1; }
restic init -q && restic backup -q --host demo "$work/src"
"$bin" snapshots
"$bin" ls latest | head -n 8
"$bin" dump latest "$work/src/docs/hello.txt"
"$bin" restore latest --target "$work/restored"
diff -r --no-dereference "$work/src" "$work/restored$work/src" && echo "restored tree is identical"
