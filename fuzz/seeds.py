#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/corpus/ from real repositories.

Usage: python3 fuzz/seeds.py RESTASH_BINARY

Sources: the fixture repositories (restic 2015-2020, version 1; rustic 0.11.4, version 2),
two repositories restic 0.14 writes here (version 2 compressed, and a version 1 copy), a
lock taken by a running restic backup, and the listings `rclone serve restic` answers for
them. Files are decrypted with the master key that `restash cat masterkey` prints; the
MAC is not checked here (restash checks it when it reads them). S3 error bodies are the
shapes S3 servers send (restash parses nothing else of S3's XML: object_store does).
Seeds are named by their SHA-1, like libFuzzer's, and capped per target.
"""

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
CORPUS = os.path.join(HERE, "corpus")
MAX_FILES = 40
MAX_SEED = 64 * 1024
PASSWORD = "geheim"

seeds = {}


def add(target, data):
    if len(data) > MAX_SEED:
        return
    seeds.setdefault(target, {})[hashlib.sha1(data).hexdigest()] = data


def decrypt(key, sealed):
    iv, ct = sealed[:16], sealed[16:-16]
    d = Cipher(algorithms.AES(key), modes.CTR(iv)).decryptor()
    return d.update(ct) + d.finalize()


def unzstd(data):
    return subprocess.run(["zstd", "-d", "-c"], input=data, check=True,
                          stdout=subprocess.PIPE).stdout


def decode_unpacked(version, plain):
    if version >= 2 and plain[:1] == b"\x02":
        return unzstd(plain[1:])
    return plain


def files_under(d):
    for root, _, names in os.walk(d):
        for n in sorted(names):
            yield os.path.join(root, n)


def harvest(restash, repo, pwfile):
    env = dict(os.environ, RESTIC_PASSWORD_FILE=pwfile)
    out = subprocess.run([restash, "-r", repo, "--no-cache", "cat", "masterkey"],
                         check=True, stdout=subprocess.PIPE, env=env).stdout
    add("key_file", out.strip())
    key = base64.b64decode(json.loads(out)["encrypt"])
    config = decrypt(key, open(os.path.join(repo, "config"), "rb").read())
    add("config_json", config)
    version = json.loads(config)["version"]
    for f in files_under(os.path.join(repo, "keys")):
        add("key_file", open(f, "rb").read())
    for sub, target in [("index", "index_json"), ("snapshots", "snapshot_json"),
                        ("locks", "lock_json")]:
        for f in files_under(os.path.join(repo, sub)):
            plain = decrypt(key, open(f, "rb").read())
            add("blob_framing", plain)
            add(target, decode_unpacked(version, plain))
    for f in files_under(os.path.join(repo, "data")):
        pack = open(f, "rb").read()
        hl = struct.unpack("<I", pack[-4:])[0]
        header = decrypt(key, pack[-4 - hl:-4])
        add("pack_header", header + struct.pack("<I", len(header)))
        pos, off = 0, 0
        while pos < len(header):
            t = header[pos]
            length = struct.unpack("<I", header[pos + 1:pos + 5])[0]
            compressed = t in (2, 3)
            ulen = struct.unpack("<I", header[pos + 5:pos + 9])[0] if compressed else 0
            pos += 41 if compressed else 37
            plain = decrypt(key, pack[off:off + length])
            off += length
            if compressed:
                add("blob_framing", struct.pack("<I", ulen) + plain)
                plain = unzstd(plain)
            if t in (1, 3):
                add("tree_json", plain)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listings(repo):
    """What `rclone serve restic` answers to a listing of each directory."""
    port = free_port()
    srv = subprocess.Popen(["rclone", "serve", "restic", repo, "--addr", f"127.0.0.1:{port}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        for d in ["data", "index", "keys", "snapshots", "locks"]:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/{d}/",
                                         headers={"Accept": "application/vnd.x.restic.rest.v2"})
            with urllib.request.urlopen(req) as r:
                body = r.read()
            add("rest_listing", body)
            # rclone speaks only v2; rest-server's v1 answer is the list of names.
            names = [e["name"] for e in json.loads(body)]
            add("rest_listing", json.dumps(names).encode())
            add("rest_listing", json.dumps([n.upper() for n in names[:1]]).encode())
    finally:
        srv.terminate()
        srv.wait()


def s3_answers():
    bodies = [
        ("NoSuchKey", "The specified key does not exist.", 404, "Not Found"),
        ("SignatureDoesNotMatch", "The request signature we calculated does not match the "
         "signature you provided. Check your key and signing method.", 403, "Forbidden"),
        ("SlowDown", "Please reduce your request rate.", 503, "Service Unavailable"),
        ("NoSuchBucket", "The specified bucket does not exist", 404, "Not Found"),
        ("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
         "succeeded and you already own it.", 409, "Conflict"),
        ("InternalError", "We encountered an internal error &amp; &lt;retry&gt;.", 500,
         "Internal Server Error"),
    ]
    for code, msg, status, reason in bodies:
        xml = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s'
               '</Message><Resource>/bucket/restic/config</Resource><RequestId>'
               '4442587FB7D0A2F9</RequestId></Error>' % (code, msg))
        add("s3_answer", xml.encode())
        add("s3_answer", ("Server returned non-2xx status code: %d %s: %s"
                          % (status, reason, xml)).encode())
    add("s3_answer", b"restic/data/5a/5a0e9a1e3e40a6d5bd1e0b6e82d1a23ec3e2c7c2bb4b8f3b1f1b"
                     b"7cde2d1e4c55")
    add("s3_answer", b"keys/5A0E9A1E3E40A6D5BD1E0B6E82D1A23EC3E2C7C2BB4B8F3B1F1B7CDE2D1E4C55")


def restic(repo, *args, **kw):
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=repo + "-cache")
    return subprocess.run(["restic", "-r", repo, "-q", *args], check=True, env=env, **kw)


def take_lock(repo, dest):
    """Copies the lock a running `restic backup --stdin` holds."""
    env = dict(os.environ, RESTIC_PASSWORD=PASSWORD, RESTIC_CACHE_DIR=repo + "-cache")
    p = subprocess.Popen(["restic", "-r", repo, "-q", "backup", "--stdin",
                          "--stdin-filename", "held"], stdin=subprocess.PIPE, env=env)
    try:
        for _ in range(300):
            locks = list(files_under(os.path.join(repo, "locks")))
            if locks:
                os.makedirs(dest, exist_ok=True)
                for f in locks:
                    shutil.copy(f, dest)
                return
            time.sleep(0.1)
        raise SystemExit(f"no lock appeared in {repo}")
    finally:
        p.stdin.write(b"held\n")
        p.stdin.close()
        p.wait()


def main():
    restash = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="restash-seeds-")
    try:
        pwfile = os.path.join(work, "pw")
        open(pwfile, "w").write(PASSWORD)
        repos = []
        for name in ["small-repo", "repo-mixed", "copy-unstable-json",
                     "repo-restore-permissions-test", "repo-obsolete-index",
                     "repo-same-timestamps"]:
            dest = os.path.join(work, name)
            with tarfile.open(os.path.join(FIXTURES, "restic-testdata", name + ".tar.gz")) as t:
                t.extractall(dest, filter="data")
            repos.append(os.path.join(dest, "repo"))
        dest = os.path.join(work, "rustic")
        with tarfile.open(os.path.join(FIXTURES, "rustic-testdata",
                                       "rustic-0.11.4-repo.tar.gz")) as t:
            t.extractall(dest, filter="data")
        repos.append(os.path.join(dest, "repo"))

        src = os.path.join(work, "src")
        with tarfile.open(os.path.join(FIXTURES, "restic-testdata", "backup-data.tar.gz")) as t:
            t.extractall(src, filter="data")
        odd = os.path.join(src, "odd")
        os.makedirs(odd)
        for n in [b"bad\xffname", b"new\nline", b"q\"uote<&>", "ünï\u200bcode".encode()]:
            open(os.path.join(odd.encode(), n), "wb").write(b"x" * 3000 + n)
        os.symlink(b"target\xfe", os.path.join(odd.encode(), b"link"))
        open(os.path.join(odd, "zeros"), "wb").write(b"\0" * 300000)
        for version, compression in [("2", "max"), ("1", "off")]:
            repo = os.path.join(work, "restic-v" + version)
            restic(repo, "init", "--repository-version", version)
            comp = ["--compression", compression] if version == "2" else []
            restic(repo, "backup", *comp, "--tag", "fuzz", "--host", "seed", src, cwd=src)
            take_lock(repo, os.path.join(work, "locks-v" + version))
            repos.append(repo)
        for repo in repos:
            harvest(restash, repo, pwfile)
            listings(repo)
        for version in ["1", "2"]:
            repo = os.path.join(work, "restic-v" + version)
            key = base64.b64decode(json.loads(subprocess.run(
                [restash, "-r", repo, "--no-cache", "cat", "masterkey"], check=True,
                stdout=subprocess.PIPE,
                env=dict(os.environ, RESTIC_PASSWORD_FILE=pwfile)).stdout)["encrypt"])
            for f in files_under(os.path.join(work, "locks-v" + version)):
                plain = decrypt(key, open(f, "rb").read())
                add("blob_framing", plain)
                add("lock_json", decode_unpacked(int(version), plain))
        s3_answers()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for target, by_name in sorted(seeds.items()):
        d = os.path.join(CORPUS, target)
        os.makedirs(d, exist_ok=True)
        # Small seeds first: many shapes, little fuzzing time per input.
        for name, data in sorted(by_name.items(), key=lambda kv: (len(kv[1]), kv[0]))[:MAX_FILES]:
            open(os.path.join(d, name), "wb").write(data)
        print(f"{target}: {min(len(by_name), MAX_FILES)} of {len(by_name)} seeds")


if __name__ == "__main__":
    main()
