#!/usr/bin/env bash
# Builds the static restash binary and the FROM-scratch image.
#   scripts/build-image.sh [TAG]          (default localhost/restash:latest)
# Environment: CONTAINER_TOOL (podman, default; or docker), CARGO_TARGET_DIR, CARGO;
#   RESTASH_BIN: a static restash binary already built (the test suite's own, see
#   scripts/test.sh) to put in the image instead of building one here.
# The `container` profile is release without LTO and with 16 codegen units. Measured
# against the release profile the benchmarks use (benches/e2e/run.sh, SCALE=0.5, best of
# 3, tmpfs) it is as fast within noise (backup 1.21 s vs 1.20 s, restore 0.81 vs 0.86,
# no-change re-backup 0.33 vs 0.33; 50,000 small files: 1.71/1.17 vs 1.68/1.17 s), and it
# builds in 1m21s instead of 3m08s, so the image ships it.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-localhost/restash:latest}
target=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
if [ -n "${RESTASH_BIN:-}" ]; then
  bin=$RESTASH_BIN
else
  RUSTFLAGS='-C target-feature=+crt-static' "${CARGO:-cargo}" build --profile container \
    --target "$target" -p restash
  bin=$target_dir/$target/container/restash
fi
if ldd "$bin" 2>&1 | grep -q '=>'; then
  echo "error: $bin is dynamically linked" >&2
  exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/restash"
"${CONTAINER_TOOL:-podman}" build -q -t "$tag" -f Dockerfile "$ctx"
echo "built $tag from $bin ($(stat -c %s "$bin") bytes)" >&2
