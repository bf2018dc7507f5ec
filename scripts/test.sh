#!/usr/bin/env bash
# The whole test suite (what README's test command and .ci/run run).
#
# After one build, two lanes run side by side, each test binary after the other:
#   local: every crate's own tests, then most end-to-end tests on local repositories;
#   net:   the tests that start network servers (SeaweedFS, Ceph RGW, rclone, fault
#          proxies) or containers, then local ones so that both lanes end together.
#          SeaweedFS binds fixed ports, one per machine, so the server tests must not
#          overlap each other; they spend most of their time waiting on throttled or faulty
#          connections, which the local lane's CPU work fills.
# Every line is prefixed with its lane; the script fails if any test fails.
#
# Everything is built static (crt-static, for the host triple given as --target so that
# build scripts and proc macros stay dynamic): the restash binary under test is then the
# one tests/container.rs puts in its FROM-scratch image, and CI builds every dependency
# once instead of twice. Artifacts go to target/<triple>/debug.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_BUILD_TARGET=$host
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
export RESTASH_TESTS_STATIC=1 # tests/container.rs images the binary under test
# Every cargo call below selects --workspace, so features unify the same way in all of
# them and the lanes never rebuild (or wait on each other's build) after this one.
cargo build --workspace --all-targets --locked

net_tests=(s3_backend s3_faults store_lies agent_s3 rest_backend tls_s3 browse_s3 crash_matrix_s3 k8s_pod container)
# The server tests take 3.5 min here and 6–8 min in CI (which installs SeaweedFS, Ceph,
# mitmproxy and fault-cli on first use); these local ones follow them so that both lanes
# end together (see the "took N s" lines).
balance=(check_repair restic_flags rewrite serve serve_browser read_fixtures rustic_fixture restore_modes)
local_tests=()
for f in tests/*.rs; do
  t=$(basename "$f" .rs)
  case " ${net_tests[*]} ${balance[*]} " in *" $t "*) ;; *) local_tests+=("$t") ;; esac
done

lane() { # NAME CARGO-TEST-ARGS... ; runs one cargo test per test target
  local name=$1
  shift
  local rc=0
  for target in "$@"; do
    if [ "$target" = crates ]; then
      # Every crate's unit and integration tests, but the binary's end-to-end tests.
      args=(--workspace --lib --bins)
      for f in crates/*/tests/*.rs; do args+=(--test "$(basename "$f" .rs)"); done
      # A test of several files is a directory with its main.rs (the engine's `memory`).
      for f in crates/*/tests/*/main.rs; do args+=(--test "$(basename "$(dirname "$f")")"); done
    elif [ "$target" = doc ]; then
      args=(--workspace --doc)
    else
      args=(--workspace --test "$target")
    fi
    local t0=$SECONDS
    # --no-fail-fast: one failing crate must not hide the others' results.
    cargo test --locked --no-fail-fast "${args[@]}" -- --test-threads 2 2>&1 | sed -u "s/^/[$name] /" \
      || { rc=1; echo "[$name] FAILED: $target"; }
    echo "[$name] $target took $((SECONDS - t0)) s"
  done
  return $rc
}

start=$(date +%s)
lane local crates doc "${local_tests[@]}" &
local_pid=$!
lane net "${net_tests[@]}" "${balance[@]}" &
net_pid=$!
rc=0
wait "$local_pid" || rc=1
wait "$net_pid" || rc=1
echo "test lanes finished in $(( $(date +%s) - start )) s: $([ $rc = 0 ] && echo ok || echo FAILED)"
exit $rc
