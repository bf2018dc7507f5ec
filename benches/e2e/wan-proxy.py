#!/usr/bin/env python3
"""A WAN-like TCP delay line for the e2e benchmark (benches/e2e/wan.sh), with an HTTP
request counter.

    wan-proxy.py LISTEN_PORT UPSTREAM_HOST:PORT MIN_MS MAX_MS LOG_FILE

Every chunk of bytes is forwarded MIN_MS..MAX_MS (uniform) after it arrived, in each
direction, without holding back the chunks behind it: a request/response round trip costs
one delay each way (40-60 ms at 20-30), a new connection one more round trip (its TCP
handshake), and bulk transfers keep their throughput (a long fat pipe, no bandwidth cap).
fault-cli cannot do this: its `latency` fault delays only the first read and the first
write of a connection (keep-alive requests after the first pass undelayed), and its
`jitter` fault delays every read and write op, so a 16 MiB upload pays ~2,000 delays.

The client-to-server stream is parsed as HTTP/1.1 (Content-Length and chunked bodies) and
every request is appended to LOG_FILE as `<unix time> <conn#> <METHOD> <path>[?<query
names>]`, every new connection as `<unix time> <conn#> CONNECT` and its end as `<unix
time> <conn#> CLOSE <bytes up> <bytes down>`: the caller counts lines before and after a
command. Query values are dropped (no signature reaches the log).
A stream that does not parse stops being counted and logs `<conn#> UNPARSED`.
"""
import asyncio
import random
import sys
import time

CHUNK = 256 * 1024
QUEUE_CHUNKS = 256  # at most 64 MiB in flight per direction and connection


class Counter:
    def __init__(self, log, conn):
        self.log, self.conn = log, conn
        self.buf = b""
        self.state = "head"  # head | body | chunk-size | chunk-data | trailer | dead
        self.left = 0

    def emit(self, what):
        self.log.write(f"{time.time():.3f} {self.conn} {what}\n")
        self.log.flush()

    def feed(self, data):
        if self.state == "dead":
            return
        try:
            self._feed(data)
        except Exception as e:  # noqa: BLE001 - a benchmark helper: stop counting, go on
            self.state = "dead"
            self.emit(f"UNPARSED {type(e).__name__}")

    def _feed(self, data):
        while data or self.buf:
            if self.state == "body":
                n = min(self.left, len(data))
                self.left -= n
                data = data[n:]
                if self.left == 0:
                    self.state = "head"
                if not data:
                    return
                continue
            if self.state == "chunk-data":
                n = min(self.left, len(data))
                self.left -= n
                data = data[n:]
                if self.left == 0:
                    self.state = "chunk-size"
                if not data:
                    return
                continue
            # Line-oriented states: gather bytes in buf.
            self.buf += data
            data = b""
            if self.state == "head":
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self.buf) > 1 << 20:
                        raise ValueError("header too long")
                    return
                head, data = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
                self.buf = b""
                lines = head.split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for l in lines[1:]:
                    k, _, v = l.partition(":")
                    headers[k.strip().lower()] = v.strip()
                path, _, query = target.partition("?")
                names = [q.partition("=")[0] for q in query.split("&") if q]
                self.emit(f"{method} {path}" + ("?" + "&".join(names) if names else ""))
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self.state = "chunk-size"
                else:
                    self.left = int(headers.get("content-length", "0"))
                    self.state = "body" if self.left else "head"
                continue
            # chunk-size or trailer: one CRLF-terminated line at a time.
            end = self.buf.find(b"\r\n")
            if end < 0:
                return
            line, data = self.buf[:end], self.buf[end + 2:]
            self.buf = b""
            if self.state == "chunk-size":
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.state = "trailer"
                else:
                    self.left, self.state = size + 2, "chunk-data"  # data and its CRLF
            elif line == b"":  # end of trailer
                self.state = "head"


async def pipe(reader, writer, lo, hi, start, tally, counter=None):
    """Copies reader to writer, each chunk `lo..hi` seconds late; never before `start`.
    Adds the bytes copied to tally[0]."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(QUEUE_CHUNKS)

    async def send():
        try:
            while True:
                due, data = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if data is None:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass

    sender = asyncio.create_task(send())
    last = start
    try:
        while True:
            data = await reader.read(CHUNK)
            tally[0] += len(data)
            if counter is not None and data:
                counter.feed(data)
            # In order: a chunk never overtakes the one before it.
            last = max(last, loop.time() + random.uniform(lo, hi))
            await queue.put((last, data or None))
            if not data:
                break
    except (ConnectionError, OSError):
        await queue.put((last, None))
    await sender


async def handle(client_r, client_w, upstream, lo, hi, log, ids):
    ids[0] += 1
    conn = ids[0]
    counter = Counter(log, conn)
    counter.emit("CONNECT")
    loop = asyncio.get_running_loop()
    # The TCP handshake of a WAN connection: one round trip before the first byte goes.
    start = loop.time() + random.uniform(lo, hi) + random.uniform(lo, hi)
    host, port = upstream.rsplit(":", 1)
    try:
        up_r, up_w = await asyncio.open_connection(host, int(port))
    except OSError:
        client_w.close()
        return
    up, down = [0], [0]
    try:
        await asyncio.gather(
            pipe(client_r, up_w, lo, hi, start, up, counter),
            pipe(up_r, client_w, lo, hi, start, down),
        )
    finally:
        counter.emit(f"CLOSE {up[0]} {down[0]}")
        for w in (up_w, client_w):
            try:
                w.close()
            except Exception:  # noqa: BLE001
                pass


async def main():
    port, upstream, lo_ms, hi_ms, log_path = sys.argv[1:6]
    lo, hi = float(lo_ms) / 1000, float(hi_ms) / 1000
    log = open(log_path, "a", buffering=1)
    ids = [0]
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, upstream, lo, hi, log, ids), "127.0.0.1", int(port),
        limit=CHUNK, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    asyncio.run(main())
