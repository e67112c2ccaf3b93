#!/usr/bin/env python3
"""A fixed-rate (open-loop) or as-fast-as-answered HTTP/1.1 keep-alive load generator, in a process of its own.

Why not httpx in the bench process: it costs ~1.3 ms of CPU per request (scripts/otp_load.py's
docstring), more than the API it measures, on the same two cores. This one writes pre-built
request bytes on raw asyncio Protocols (uvloop) and parses only the status line,
Content-Length and the `"id"` of a 202 body, so its own CPU per request stays in the tens of
microseconds; it measures that figure and reports it, so a run can tell what the generator took.

Two modes:

- `--rate R` (> 0): request i is due at t0 + i / R, whatever happened before (open loop). A
  connection takes the oldest request not yet sent, waits for its due time if early, and
  sends it. If every connection is busy, the request waits for one, and that wait counts:
  latency is measured from the due time, not from the write (no coordinated omission).
  What is still unsent when the run ends is reported (`unsent`) and enters the percentiles
  with the wait it had at the end, a lower bound, so a generator or server that falls
  behind cannot look fast.
- `--rate 0` (the maximum): each connection sends its next request as soon as the previous
  one is answered; latency is from the write.

`--warmup` seconds run first at the same rate and are not counted. Bodies come from a
template in which every run of `#` is replaced by digits (the first run by the request
number, the others by a hash of it), so each request is distinct.

stdout: one JSON document (counts, statuses, errors, rates, latency percentiles, the
generator's CPU). `--ids FILE`: one line per measured 202, `id due answered` (Unix epoch
seconds, the same host clock PostgreSQL uses; `due` is when the request was due, or when it was
written if the timer let it out early), for joining with the audit trail.
stderr: `measure-start <epoch>` and `measure-end <epoch>` as the measured window opens and
closes (the bench samples CPU over exactly that window), and any warnings.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import re
import sys
import time
import uuid
from array import array
from collections import Counter
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

DEFAULT_BODY = '{"channel":"sms","to":"+1555#######","body":"Your code is ######"}'
END_GRACE_S = 30.0  # requests still unanswered this long after the end are counted as timeouts
EARLY_SLACK_S = 0.0005  # a request due sooner than this is sent now (the timer's resolution is 1 ms)
HASH = 2654435761  # Knuth's multiplicative hash: the other digit runs vary without repeating the first

Response = tuple[int, bytes, float]  # status, body, monotonic time the last byte arrived


class Template:
    """Distinct bodies from one template without json.dumps per request: literal parts and digit runs."""

    def __init__(self, text: str) -> None:
        parts = re.split(r"(#+)", text)
        self.literals = [p.encode() for p in parts[0::2]]
        self.widths = [len(p) for p in parts[1::2]]
        json.loads(self.body(0))  # a template that is not JSON fails here, not as 400 errors at full speed

    def body(self, i: int) -> bytes:
        out = [self.literals[0]]
        for k, width in enumerate(self.widths):
            n = i if k == 0 else (i + k) * HASH
            out.append(b"%0*d" % (width, n % 10**width))
            out.append(self.literals[k + 1])
        return b"".join(out)

    @property
    def distinct(self) -> int:
        """How many requests get distinct bodies (the first digit run's range)."""
        return 10 ** self.widths[0] if self.widths else 1


class Connection(asyncio.Protocol):
    """One keep-alive socket, one request at a time; parses just enough of the response to find its end."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.head_end = -1  # offset of the body in buf once the head is complete
        self.status = 0
        self.length = 0
        self.close_after = False  # the server said `Connection: close`
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(ConnectionError(f"connection lost: {exc}"))

    def request(self, data: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.waiter = waiter
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.head_end < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            try:
                self._parse_head(end)
            except ValueError as exc:
                self._fail(exc)
                self.close()
                return
        total = self.head_end + self.length
        if len(self.buf) < total:
            return
        answered = time.monotonic()
        body = bytes(self.buf[self.head_end : total])
        del self.buf[:total]
        self.head_end = -1
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self.status, body, answered))

    def _parse_head(self, end: int) -> None:
        if not self.buf.startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP/1.x response: {bytes(self.buf[:40])!r}")
        self.status = int(self.buf[9:12])
        head = bytes(self.buf[:end]).lower()
        if b"\r\ntransfer-encoding:" in head:
            raise ValueError("chunked responses are not supported (the measured endpoints send Content-Length)")
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.length = 0
        else:
            stop = head.find(b"\r\n", at + 2)
            self.length = int(head[at + 17 : stop if stop > 0 else len(head)])
        self.close_after = b"\r\nconnection: close" in head
        self.head_end = end + 4


def parse_id(body: bytes) -> bytes | None:
    """The `"id"` of a 202 body, without json.loads on the hot path (notifq answers compact JSON)."""
    at = body.find(b'"id":')
    if at < 0:
        return None
    start = at + 5
    while start < len(body) and body[start] in b' "':
        start += 1
    stop = start
    while stop < len(body) and 48 <= body[stop] <= 57:
        stop += 1
    return body[start:stop] if stop > start else None


def percentiles(values: array[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": -1.0, "p90": -1.0, "p99": -1.0, "max": -1.0}

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2)

    return {"n": len(ordered), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(ordered[-1], 2)}


class Generator:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        if url.scheme != "http" or not url.hostname:
            raise SystemExit(f"an http:// URL is needed, got {args.url!r}")
        self.host, self.port = url.hostname, url.port or 80
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        auth = f"Authorization: Bearer {args.token}\r\n" if args.token else ""
        self.head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{auth}"
                     "Content-Type: application/json\r\n").encode()  # fmt: skip
        self.key_prefix = f"loadgen-{uuid.uuid4().hex[:12]}-".encode() if args.idempotency_key else None
        self.template = Template(args.body)
        self.rate: float = args.rate
        self.warmup: float = args.warmup
        self.duration: float = args.duration
        self.connections: int = args.connections
        # The timeline (monotonic seconds); set by run().
        self.t0 = self.t_measure = self.t_end = 0.0
        self.wall0 = self.mono0 = 0.0
        self.next_i = 0
        # Fixed rate: request i is measured iff i_measure <= i < i_end.
        self.i_measure = self.first_index(self.warmup) if self.rate > 0 else 0
        self.i_end = self.first_index(self.warmup + self.duration) if self.rate > 0 else 0
        # Results (measured requests only).
        self.statuses: Counter[int] = Counter()
        self.socket_errors = 0
        self.sent = 0
        self.latency_ms: array[float] = array("d")
        self.send_lag_ms: array[float] = array("d")
        self.accepted: list[tuple[bytes, float, float]] = []
        self.keep_ids = args.ids is not None  # the floor's ~500,000 answers need no id list
        self.no_id = 0
        self.error_samples: list[str] = []
        self.cpu_start = self.cpu_end = 0.0
        self.measured_wall: list[float] = []

    def first_index(self, offset: float) -> int:
        """The first request due at or after t0 + offset (the same arithmetic decides what is measured)."""
        return math.ceil(offset * self.rate - 1e-9)

    def epoch(self, mono: float) -> float:
        return self.wall0 + (mono - self.mono0)

    def encode(self, i: int) -> bytes:
        body = self.template.body(i)
        key = b"Idempotency-Key: " + self.key_prefix + b"%d\r\n" % i if self.key_prefix else b""
        return self.head + key + b"Content-Length: %d\r\n\r\n" % len(body) + body

    async def open(self) -> Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(Connection, self.host, self.port)
        return conn

    def take(self) -> tuple[int, float] | None:
        """The next request and its due time (monotonic), or None once the run is over."""
        now = time.monotonic()
        if now >= self.t_end:
            return None
        i = self.next_i
        if self.rate > 0:
            if i >= self.i_end:
                return None
            due = self.t0 + i / self.rate
        else:
            due = now
        self.next_i += 1
        return i, due

    def measured(self, i: int, due: float) -> bool:
        return self.i_measure <= i < self.i_end if self.rate > 0 else due >= self.t_measure

    def note_error(self, text: str) -> None:
        if len(self.error_samples) < 10:
            self.error_samples.append(text)

    async def drive(self, conn: Connection | None) -> None:
        """One connection's loop: take the oldest request, wait for its time, send it, read the answer."""
        while (job := self.take()) is not None:
            i, due = job
            if self.rate > 0:
                delay = due - time.monotonic()
                if delay > EARLY_SLACK_S:
                    await asyncio.sleep(delay)
            data = self.encode(i)
            if conn is None or conn.lost:
                try:
                    conn = await self.open()
                except OSError as exc:
                    conn = None
                    if self.measured(i, due):
                        self.sent += 1
                        self.socket_errors += 1
                    self.note_error(f"connect: {exc}")
                    await asyncio.sleep(0.01)  # a refused connect must not spin
                    continue
            started = time.monotonic()
            # From the due time (a wait for a free connection counts), or from the write if the timer let it out early.
            scheduled = min(due, started)
            if self.rate <= 0:
                due = started
            try:
                status, body, answered = await conn.request(data)
            except (OSError, ValueError) as exc:  # ConnectionError is an OSError
                conn.close()
                conn = None
                if self.measured(i, due):
                    self.sent += 1
                    self.socket_errors += 1
                self.note_error(f"request: {exc}")
                continue
            if conn.close_after:
                conn.close()
                conn = None
            if not self.measured(i, due):
                continue
            self.sent += 1
            self.statuses[status] += 1
            if self.rate > 0:
                self.send_lag_ms.append((started - due) * 1000)
            if status != 202:
                if status >= 400:
                    self.note_error(f"{status}: {body[:200]!r}")
                continue
            self.latency_ms.append((answered - scheduled) * 1000)
            ident = parse_id(body)
            if ident is None:
                self.no_id += 1
            elif self.keep_ids:
                self.accepted.append((ident, scheduled, answered))
        if conn is not None:
            conn.close()

    def mark(self, what: str) -> None:
        """The measured window opens or closes: note the CPU so far and tell the bench (stderr)."""
        now = time.monotonic()
        if what == "measure-start":
            self.cpu_start = time.process_time()
        else:
            self.cpu_end = time.process_time()
        self.measured_wall.append(self.epoch(now))
        sys.stderr.write(f"{what} {self.epoch(now):.6f}\n")
        sys.stderr.flush()

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            conns = await asyncio.gather(*(self.open() for _ in range(self.connections)))
        except OSError as exc:
            raise SystemExit(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        gc.collect()
        gc.disable()  # a collection pause would show as latency; the run's garbage is small and freed at exit
        self.mono0, self.wall0 = time.monotonic(), time.time()
        self.t0 = self.mono0 + 0.05
        self.t_measure = self.t0 + self.warmup
        self.t_end = self.t_measure + self.duration
        loop.call_at(loop.time() + (self.t_measure - time.monotonic()), self.mark, "measure-start")
        loop.call_at(loop.time() + (self.t_end - time.monotonic()), self.mark, "measure-end")
        tasks = [asyncio.create_task(self.drive(c)) for c in conns]
        await asyncio.sleep(max(0.0, self.t_end - time.monotonic()))
        _, pending = await asyncio.wait(tasks, timeout=END_GRACE_S + 1.0)
        for task in pending:
            task.cancel()
        timeouts = len(pending)  # each was waiting on one unanswered request
        if len(self.measured_wall) < 2:  # the end timer had not fired yet (a run cut short)
            self.mark("measure-end")
        return self.report(timeouts)

    def report(self, timeouts: int) -> dict[str, Any]:
        # Requests due in the window but never sent: they wait until the end at least (a lower bound).
        unsent = 0
        waits = array("d", self.latency_ms)
        if self.rate > 0:
            first = max(self.next_i, self.i_measure)
            unsent = max(0, self.i_end - first)
            waits.extend((self.t_end - (self.t0 + i / self.rate)) * 1000 for i in range(first, self.i_end))
        answered = sum(self.statuses.values())
        accepted = self.statuses.get(202, 0)
        non_202 = answered - accepted
        errors = {"non_202": non_202, "socket": self.socket_errors, "timeout": timeouts,
                  "total": non_202 + self.socket_errors + timeouts}  # fmt: skip
        cpu = max(0.0, self.cpu_end - self.cpu_start)
        return {
            "url": f"http://{self.host}:{self.port}",
            "mode": "rate" if self.rate > 0 else "max",
            "rate": self.rate,
            "warmup_s": self.warmup,
            "duration_s": self.duration,
            "connections": self.connections,
            "idempotency_key": self.key_prefix is not None,
            "window": [round(self.epoch(self.t_measure), 6), round(self.epoch(self.t_end), 6)],
            "scheduled": self.i_end - self.i_measure if self.rate > 0 else None,
            "sent": self.sent + timeouts,
            "answered": answered,
            "status": {str(k): v for k, v in sorted(self.statuses.items())},
            "accepted": accepted,
            "accepted_without_id": self.no_id,
            "errors": errors,
            "error_samples": self.error_samples,
            "unsent": unsent,
            "accepted_per_s": round(accepted / self.duration, 1),
            "achieved_per_s": round(answered / self.duration, 1),
            "latency_ms": percentiles(waits),  # POST → 202, from the due time; unsent ones at their lower bound
            "latency_202_only_ms": percentiles(self.latency_ms),
            "send_lag_ms": percentiles(self.send_lag_ms),  # write time - due time: the generator's own lateness
            "distinct_bodies": self.template.distinct,
            "loadgen_cpu": {"seconds": round(cpu, 3), "us_per_request": round(cpu * 1e6 / max(1, answered), 1)},
        }

    def write_ids(self, path: Path) -> int:
        with path.open("wb") as out:
            for ident, due, answered in self.accepted:
                out.write(b"%s %.6f %.6f\n" % (ident, self.epoch(due), self.epoch(answered)))
        return len(self.accepted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="e.g. http://127.0.0.1:8000/notifications")
    parser.add_argument("--token", default="", help="bearer token (none if empty)")
    parser.add_argument("--rate", type=float, default=0, help="requests per second; 0 = as fast as answered")
    parser.add_argument("--duration", type=float, default=30, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2, help="seconds sent first and not counted")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--body", default=DEFAULT_BODY, help="JSON body template; each run of # becomes digits")
    parser.add_argument("--idempotency-key", action="store_true", help="a distinct Idempotency-Key per request")
    parser.add_argument("--ids", type=Path, help="write `id due answered` per measured 202 to this file")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.duration <= 0 or args.rate < 0 or args.warmup < 0:
        parser.error("--connections >= 1, --duration > 0, --rate >= 0, --warmup >= 0")
    try:
        generator = Generator(args)
    except ValueError as exc:
        parser.error(f"--body is not JSON once its # runs are digits: {exc}")
    expected = (args.rate or 20_000) * (args.warmup + args.duration)
    if expected > generator.template.distinct:
        print(f"warning: ~{expected:,.0f} requests but the template gives {generator.template.distinct:,} distinct "
              "bodies", file=sys.stderr)  # fmt: skip
    import uvloop  # a notifq dependency on Linux

    result = uvloop.run(generator.run())
    if args.ids is not None:
        result["ids_file"] = str(args.ids)
        result["ids_written"] = generator.write_ids(args.ids)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
