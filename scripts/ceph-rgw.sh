#!/usr/bin/env bash
# A real single-node Ceph RGW — what Open Storage Network runs — for the S3 tests: one
# monitor, one OSD on memstore (RAM, no disks), no mgr, radosgw on 127.0.0.1, SigV4 with
# the access key `testkey` / secret `testsecret`. Needs Debian's `radosgw ceph-mon ceph-osd`
# (.ci/run installs them).
#
#   scripts/ceph-rgw.sh start DIR PORT   # everything under DIR; waits until S3 answers
#   scripts/ceph-rgw.sh stop DIR         # stops the daemons started by `start DIR`
#
# Environment: S3_SERVER_OWNER_PID — if set, a watchdog stops the daemons (and deletes DIR)
# once that process is gone, so no cluster outlives the test binary that started it.
set -euo pipefail

die() { echo "ceph-rgw.sh: $*" >&2; exit 1; }

answers() { curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; }

start() {
  local dir=$1 port=$2
  for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph; do
    command -v "$b" >/dev/null || die "$b missing (apt-get install radosgw ceph-mon ceph-osd)"
  done
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir"/{run,log,mon,osd,rgw}
  local mon_port
  mon_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local fsid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  local conf=$dir/ceph.conf
  # Authentication is off inside this private cluster; the `ms * mode = crc` lines are
  # required with it off (else radosgw loops on "get_initial_auth_request returned -13").
  cat > "$conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 4294967296
osd crush chooseleaf type = 0
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
pid file = $dir/run/\$name.pid
mon data = $dir/mon/\$cluster-\$id
osd data = $dir/osd/\$cluster-\$id
keyring = $dir/keyring
rgw data = $dir/rgw
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$port
rgw dns name = 127.0.0.1
EOF
  : > "$dir/keyring"
  monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" \
    "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mkfs-mon.out" 2>&1 \
    || { cat "$dir/log/mkfs-mon.out" >&2; die "ceph-mon --mkfs failed"; }
  ceph-mon -c "$conf" -i a || die "ceph-mon failed to start"
  local osd
  osd=$(timeout 60 ceph -c "$conf" osd create) || die "ceph osd create failed"
  mkdir -p "$dir/osd/ceph-$osd"
  ceph-osd -c "$conf" -i "$osd" --mkfs >"$dir/log/mkfs-osd.out" 2>&1 \
    || { cat "$dir/log/mkfs-osd.out" >&2; die "ceph-osd --mkfs failed"; }
  ceph-osd -c "$conf" -i "$osd" || die "ceph-osd failed to start"
  radosgw -c "$conf" -n client.rgw || die "radosgw failed to start"
  if [ -n "${S3_SERVER_OWNER_PID:-}" ]; then
    setsid bash "$0" watchdog "$dir" "$S3_SERVER_OWNER_PID" </dev/null >/dev/null 2>&1 &
  fi
  for _ in $(seq 900); do
    if answers "$port"; then
      timeout 60 radosgw-admin -c "$conf" -n client.rgw user create --uid test \
        --display-name test --access-key testkey --secret-key testsecret >/dev/null \
        || die "radosgw-admin user create failed"
      echo "ceph-rgw.sh: Ceph RGW up on http://127.0.0.1:$port" >&2
      return 0
    fi
    sleep 0.1
  done
  tail -20 "$dir/log/client.rgw.log" >&2 || true
  die "radosgw did not answer on port $port within 90 s"
}

stop() {
  local dir=$1 f pid
  for f in "$dir"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
  done
  for f in "$dir"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

watchdog() {
  local dir=$1 owner=$2
  while kill -0 "$owner" 2>/dev/null; do sleep 1; done
  stop "$dir"
  rm -rf "$dir"
}

case "${1:-}" in
  start) [ $# -eq 3 ] || die "usage: $0 start DIR PORT"; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; stop "$2" ;;
  watchdog) watchdog "$2" "$3" ;;
  *) die "usage: $0 start DIR PORT | stop DIR" ;;
esac
