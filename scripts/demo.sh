#!/usr/bin/env bash
# A local demo with no server: restash initialises a repository, backs up a sample tree,
# lists and browses it, restores it and compares; restic (if installed) checks the result.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p restash -q
bin=$PWD/target/release/restash
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=demo-password RESTIC_REPOSITORY=$work/repo RESTIC_CACHE_DIR=$work/cache
mkdir -p "$work/src/docs" && echo "hello from restash" > "$work/src/docs/hello.txt"
tar xzf fixtures/restic-testdata/backup-data.tar.gz -C "$work/src"
ln -s docs/hello.txt "$work/src/link"
"$bin" init
"$bin" backup --host demo "$work/src"
"$bin" snapshots
"$bin" ls latest | head -n 8
"$bin" dump latest "$work/src/docs/hello.txt"
"$bin" restore latest --target "$work/restored"
diff -r --no-dereference "$work/src" "$work/restored$work/src" && echo "restored tree is identical"
if command -v restic >/dev/null; then
  restic --no-cache check --read-data && echo "restic 0.14 agrees: the repository is sound"
fi
