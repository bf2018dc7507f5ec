#!/usr/bin/env bash
# Screenshots of `restash serve` for the README: builds a demo repository of JupyterHub
# volumes (claim-alice, claim-bob, …: nightly snapshots of /data growing and shrinking,
# one volume whose backups stopped days ago, one whose newest backup could not read every
# file), serves it, and lets tests/browser/serve.mjs take the pictures in Debian's
# chromium:
#   docs/img/serve-volumes.png  the volumes page, 1280x800
#   docs/img/serve-browse.png   a folder of a snapshot
#   docs/img/serve-phone.png    the volumes page on a phone, 390x844
#
# Needs restic, chromium (apt-get install chromium) and `npm ci --prefix tests/browser`.
# RESTASH=path uses that binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

[ -x /usr/bin/chromium ] || { echo "install Debian's chromium: apt-get install chromium" >&2; exit 1; }
[ -f tests/browser/node_modules/playwright-core/package.json ] ||
  { echo "run: npm ci --prefix tests/browser" >&2; exit 1; }
if [ -z "${RESTASH:-}" ]; then
  cargo build -q -p restash
  RESTASH="${CARGO_TARGET_DIR:-$root/target}/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}debug/restash"
fi

work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill -INT "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export RESTIC_PASSWORD=demo-password TZ=UTC RESTIC_CACHE_DIR=$work/cache
repo=$work/repo
"$RESTASH" -r "$repo" init -q >/dev/null

now=$(date +%s)
# Nightly backups run at 03:00; the newest of them is the last 03:00 before now.
last_night=$(( (now - 3 * 3600) / 86400 * 86400 + 3 * 3600 ))

# put VOLUME FILE KIB: a file of random bytes in VOLUME's /data.
put() {
  mkdir -p "$(dirname "$work/$1/data/$2")"
  head -c "$(( $3 * 1024 ))" /dev/urandom >"$work/$1/data/$2"
}

# night VOLUME DAYS-AGO [TAG]: the backup Job of VOLUME, DAYS-AGO nights back, with restic
# 0.14 (restash cannot backdate), files dated the evening before.
night() {
  local at=$(( last_night - $2 * 86400 + RANDOM % 240 )) tag=()
  [ -n "${3:-}" ] && tag=(--tag "$3")
  find "$work/$1/data" -newer "$work/stamp" -exec touch -d "@$(( at - 5 * 3600 - RANDOM % 7200 ))" {} +
  (cd "$work/$1" && restic --no-cache -r "$repo" -q backup --host "$1" \
    --time "$(date -u -d "@$at" '+%Y-%m-%d %H:%M:%S')" "${tag[@]}" data)
  touch "$work/stamp"
}

touch -d @0 "$work/stamp"
# A volume per user; each night adds or removes work.
put claim-alice notebooks/01-exploration.ipynb 180; put claim-alice datasets/measurements.csv 2400
put claim-alice .jupyter/lab/workspaces/default.json 4; night claim-alice 6
put claim-alice notebooks/02-cleaning.ipynb 240; put claim-alice datasets/measurements-2.csv 3100
night claim-alice 5
put claim-alice notebooks/03-model.ipynb 420; put claim-alice results/figure-01.png 350; night claim-alice 4
put claim-alice results/model.pkl 5200; put claim-alice results/figure-02.png 410; night claim-alice 3
rm "$work/claim-alice/data/results/model.pkl"; put claim-alice notebooks/04-report.ipynb 300
night claim-alice 2
put claim-alice results/model-v2.pkl 6100; put claim-alice README.md 3; night claim-alice 1
put claim-alice notebooks/05-validation.ipynb 260; night claim-alice 0

put claim-bob thesis/chapter-1.tex 60; put claim-bob thesis/figures/plot-a.pdf 900; night claim-bob 3
put claim-bob thesis/chapter-2.tex 75; put claim-bob thesis/figures/plot-b.pdf 1300; night claim-bob 2
put claim-bob thesis/chapter-3.tex 90; night claim-bob 1
put claim-bob thesis/references.bib 40; put claim-bob thesis/figures/plot-c.pdf 1700; night claim-bob 0

put claim-carol genomics/sample-01.fastq.gz 9000; night claim-carol 2
put claim-carol genomics/sample-02.fastq.gz 9500; night claim-carol 1
put claim-carol genomics/sample-03.fastq.gz 8800; put claim-carol pipeline.ipynb 120; night claim-carol 0

# Dave's backups stopped four days ago.
put claim-dave course/homework-1.ipynb 90; night claim-dave 6
put claim-dave course/homework-2.ipynb 110; night claim-dave 5
put claim-dave course/homework-3.ipynb 140; put claim-dave course/data.csv 800; night claim-dave 4

# Erin's newest backup could not read every file.
put claim-erin simulations/run-001.h5 4200; night claim-erin 2
put claim-erin simulations/run-002.h5 4600; night claim-erin 1
put claim-erin simulations/run-003.h5 2100; night claim-erin 0 partial

put claim-frank scratch.ipynb 30; night claim-frank 1; night claim-frank 0
put claim-grace climate/era5-subset.nc 12000; put claim-grace climate/analysis.ipynb 210
night claim-grace 3; put claim-grace climate/era5-subset-2.nc 7000; night claim-grace 2
rm "$work/claim-grace/data/climate/era5-subset.nc"; night claim-grace 1; night claim-grace 0
put claim-heidi labs/lab-01.ipynb 70; night claim-heidi 0

"$RESTASH" -r "$repo" serve --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 100); do
  grep -q "serving the repository at" "$work/serve.out" && break
  sleep 0.1
done
url=$(sed -n 's/^serving the repository at //p' "$work/serve.out")
[ -n "$url" ] || { cat "$work/serve.err" >&2; exit 1; }

mkdir -p docs/img
BASE_URL=$url SCREENSHOT_DIR=$root/docs/img \
  BROWSE='{"host":"claim-alice","steps":[{"open":"data"},{"open":"notebooks"},{"shot":"serve-browse.png"}]}' \
  node tests/browser/serve.mjs >/dev/null
ls -l docs/img/serve-*.png
