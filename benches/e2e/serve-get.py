#!/usr/bin/env python3
"""One visit of `restash serve`, timed as a whole by the caller: start the server, wait
for its "serving the repository at URL" line, fetch the volumes page, and with --file
also download one file of the newest snapshot (as a user clicks it) and compare its
bytes; then stop the server. Exit status 0 only if every response was complete and the
bytes equal.

usage: serve-get.py [--file SNAPSHOT_PATH --expect LOCAL_FILE] -- RESTASH_ARGV... serve ...
"""
import json
import subprocess
import sys
import urllib.parse
import urllib.request


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit(__doc__)
    split = argv.index("--")
    opts, cmd = argv[:split], argv[split + 1:]
    file_path = expect = None
    while opts:
        flag, value, opts = opts[0], opts[1], opts[2:]
        if flag == "--file":
            file_path = value
        elif flag == "--expect":
            expect = value
        else:
            sys.exit(f"unknown option {flag}")
    proc = subprocess.Popen(cmd + ["--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        base = None
        for line in proc.stdout:
            if line.startswith("serving the repository at "):
                base = line.split(" at ", 1)[1].strip().rstrip("/")
                break
        if base is None:
            sys.exit(f"serve exited with {proc.wait()} before it was ready")
        page = urllib.request.urlopen(base + "/", timeout=600).read()
        if b'id="volumes"' not in page:
            sys.exit("the volumes page has no volumes table")
        if file_path:
            vols = json.load(urllib.request.urlopen(base + "/api/volumes", timeout=600))
            newest = max(vols, key=lambda v: v["last_time"])
            quoted = "/".join(urllib.parse.quote(c, safe="") for c in file_path.strip("/").split("/"))
            url = f"{base}/snapshots/{newest['last_snapshot']}/file/{quoted}"
            got = urllib.request.urlopen(url, timeout=600).read()
            with open(expect, "rb") as f:
                if got != f.read():
                    sys.exit(f"downloaded {len(got)} bytes that differ from {expect}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
