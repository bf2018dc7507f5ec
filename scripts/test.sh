#!/usr/bin/env bash
# The whole test suite (what README's test command and .ci/run run).
#
# After one build, two lanes run side by side, each test binary after the other:
#   local: every crate's own tests, then every end-to-end test on local repositories;
#   net:   the tests that start network servers (SeaweedFS, Ceph RGW, rclone, fault proxies)
#          or containers. SeaweedFS binds fixed ports, one per machine, so those tests must
#          not overlap each other; they spend most of their time waiting on throttled or
#          faulty connections, which the local lane's CPU work fills.
# Every line is prefixed with its lane; the script fails if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --all-targets --locked

net_tests=(s3_backend s3_faults agent_s3 rest_backend k8s_pod container)
local_tests=()
for f in tests/*.rs; do
  t=$(basename "$f" .rs)
  case " ${net_tests[*]} " in *" $t "*) ;; *) local_tests+=("$t") ;; esac
done

lane() { # NAME CARGO-TEST-ARGS... ; runs one cargo test per test target
  local name=$1
  shift
  local rc=0
  for target in "$@"; do
    if [ "$target" = crates ]; then
      # Every crate's unit, integration and doc tests, but the binary's end-to-end tests.
      args=(--workspace --exclude restash)
    elif [ "$target" = cli-units ]; then
      args=(-p restash --bins)
    else
      args=(-p restash --test "$target")
    fi
    cargo test --locked "${args[@]}" -- --test-threads 2 2>&1 | sed -u "s/^/[$name] /" \
      || { rc=1; echo "[$name] FAILED: $target"; }
  done
  return $rc
}

start=$(date +%s)
lane local crates cli-units "${local_tests[@]}" &
local_pid=$!
lane net "${net_tests[@]}" &
net_pid=$!
rc=0
wait "$local_pid" || rc=1
wait "$net_pid" || rc=1
echo "test lanes finished in $(( $(date +%s) - start )) s: $([ $rc = 0 ] && echo ok || echo FAILED)"
exit $rc
