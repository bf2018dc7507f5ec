#!/usr/bin/env python3
"""TLS in front of a plain-HTTP server, for the HTTPS tests (tests/tls_s3.rs).

    tls-proxy.py --cert CERT --key KEY --upstream HOST:PORT [--client-ca CA] [--owner PID]

Listens on 127.0.0.1 on a free port, prints that port on stdout, and forwards each
connection's bytes to the upstream server once the TLS handshake is done. With --client-ca
a client certificate signed by that CA is required. With --owner it exits once that
process is gone, so no proxy outlives the test binary that started it.

One thread per connection does both directions with select(): OpenSSL does not allow one
connection to be read and written from two threads at once. The handshake runs on a
blocking socket so that a refused handshake sends its alert (asyncio's TLS closes without
it, which a client cannot tell from a dropped connection).
"""
import argparse
import os
import select
import socket
import ssl
import sys
import threading
import time


def relay(conn, ctx, upstream):
    try:
        conn.settimeout(10)
        tls = ctx.wrap_socket(conn, server_side=True)
    except (OSError, ssl.SSLError):
        conn.close()
        return
    try:
        tls.settimeout(None)
        up = socket.create_connection(upstream, timeout=10)
        up.settimeout(None)
    except OSError:
        tls.close()
        return
    try:
        while True:
            # Bytes already decrypted wait inside the TLS object, not in the socket.
            ready = [tls] if tls.pending() else select.select([tls, up], [], [], 300)[0]
            if not ready:
                break
            if tls in ready:
                data = tls.recv(65536)
                if not data:
                    break
                up.sendall(data)
            if up in ready:
                data = up.recv(65536)
                if not data:
                    break
                tls.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        up.close()
        tls.close()


def watch_owner(pid):
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--client-ca")
    ap.add_argument("--owner", type=int)
    args = ap.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    upstream = (host, int(port))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    if args.client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(args.client_ca)

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    print(srv.getsockname()[1], flush=True)
    if args.owner:
        threading.Thread(target=watch_owner, args=(args.owner,), daemon=True).start()
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=relay, args=(conn, ctx, upstream), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
