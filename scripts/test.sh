#!/usr/bin/env bash
# The whole test suite (what README's test command and .ci/run run).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads 2
