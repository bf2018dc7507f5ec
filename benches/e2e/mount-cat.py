#!/usr/bin/env python3
"""Times a mount: from starting `CMD... mount MOUNTPOINT` to one file read through it.

usage: mount-cat.py MOUNTPOINT REL_PATH SOURCE_FILE LOG -- CMD...

Starts CMD (which mounts at MOUNTPOINT) with its output in LOG, tries to read
MOUNTPOINT/REL_PATH every 5 ms until the mount is up and the read succeeds, compares the
bytes with SOURCE_FILE, then stops CMD with SIGINT (the way both tools unmount) and waits
for it. Prints one line:

    <seconds to the read> <user s> <sys s> <max RSS KiB> <exit code> <check>

where user, sys and RSS are the mounting process's over its whole life (wait4) and check
is `identical`, `MISMATCH` or what failed. Exits non-zero when the read never succeeded,
the tool failed, or the mount was still there after the tool exited (it is then removed
with `fusermount3 -u -z`).
"""

import os
import signal
import subprocess
import sys
import time

TIMEOUT_S = 600


def mounted(mnt):
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == mnt for line in f)


def reap(pid, flags):
    """(exit code as a shell shows it, rusage) of the ended child, or None."""
    got, status, usage = os.wait4(pid, flags)
    if got == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), usage


def main():
    if len(sys.argv) < 7 or sys.argv[5] != "--":
        sys.exit(__doc__)
    mnt, rel, source, log = sys.argv[1:5]
    cmd = sys.argv[6:]
    mnt = os.path.realpath(mnt)
    want = open(source, "rb").read()
    target = os.path.join(mnt, rel)
    out = open(log, "ab")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    took, check, got, ended = None, "no read", None, None
    while time.monotonic() - start < TIMEOUT_S:
        ended = reap(proc.pid, os.WNOHANG)
        if ended:
            check = f"exited {ended[0]} before the read"
            break
        # Before the mount is up, the path is missing from the empty directory.
        if mounted(mnt):
            try:
                with open(target, "rb") as f:
                    got = f.read()
                took = time.monotonic() - start
                break
            except OSError as e:
                check = f"read: {e}"
        time.sleep(0.005)
    if got is not None:
        check = "identical" if got == want else "MISMATCH"
    if not ended:
        proc.send_signal(signal.SIGINT)
        ended = reap(proc.pid, 0)
    code, usage = ended
    # Reaped here, not by Popen.
    proc.returncode = code
    stale = False
    for _ in range(100):
        if not mounted(mnt):
            break
        time.sleep(0.05)
    else:
        stale = True
        subprocess.run(["fusermount3", "-u", "-z", mnt], check=False)
        check += "; still mounted after exit"
    wall = f"{took:.2f}" if took is not None else ""
    print(wall, f"{usage.ru_utime:.2f}", f"{usage.ru_stime:.2f}", usage.ru_maxrss, code,
          check.replace(" ", "_"))
    # Both tools exit 130 when SIGINT ends their mount.
    ok = took is not None and check == "identical" and code in (0, 130) and not stale
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
