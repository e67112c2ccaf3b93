"""`notifq worker`, with a mock provider that writes down every call it accepts: the chaos suite's duplicate count.

A duplicate is a message that reached the provider more than once, and only the provider can
see that: the audit trail records claims (`attempt` events), and a claim whose worker died
before its provider call is no duplicate. So the chaos suite starts its workers through this
script, which wraps `MockProvider.send` before the worker starts: each call the mock accepts
appends its message id and attempt (10 bytes) to the file named by NOTIFQ_CHAOS_CALLS, with one
`write(2)` on an `O_APPEND` descriptor and no buffer of ours, so a SIGKILL loses nothing the
"provider" accepted (the write is the next statement after `send` returns, with no `await`
between them). One file per worker process; `chaos_checks.read_calls` sums them.
Otherwise this is `notifq worker` unchanged: same settings, same signals, same exit codes.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

from notifq.providers import mock
from notifq.providers.base import OutgoingMessage, SendResult

CALLS_ENV = "NOTIFQ_CHAOS_CALLS"
RECORD = struct.Struct("<qh")  # message id (bigint), attempt (smallint)


def instrument(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    send = mock.MockProvider.send

    async def counted(self: mock.MockProvider, message: OutgoingMessage) -> SendResult:
        result = await send(self, message)
        os.write(fd, RECORD.pack(message.message_id, message.attempt))
        return result

    mock.MockProvider.send = counted  # type: ignore[method-assign]


def main() -> None:
    path = os.environ.get(CALLS_ENV)
    if not path:
        sys.exit(f"chaos_worker: {CALLS_ENV} must name the file for the mock's calls")
    instrument(Path(path))
    from notifq.cli import main as notifq_main

    notifq_main(["worker"])


if __name__ == "__main__":
    main()
