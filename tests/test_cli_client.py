"""The operator command line (`notifq campaign …`, `workers`, `login`) as a subprocess against a real API and worker."""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import getpass
import io
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from notifq import idempotency
from notifq.api_keys import KEY_PREFIX
from notifq.client import commands
from notifq.client.api import API_KEY_PREFIX, ApiError, Unreachable, UsageError, check_idempotency_key
from notifq.client.commands import terminal_safe_json
from notifq.client.progress import OUTAGE_TOLERANCE_SECONDS, ProgressView, RateMeter, Snapshot, describe, watch
from notifq.client.recipients import parse_csv
from notifq.client.report import failure_hints, summary
from notifq.errors import ValidationError
from notifq.vocabulary import CampaignStatus
from tests.api.support import row_counts
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.harness import running_worker
from tests.live import LiveApi

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _env(url: str, token: str | None = None, **extra: str) -> dict[str, str]:
    """The child sees only what the test gives it: no NOTIFQ_* from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFQ_", "DATABASE_URL", "REDIS_URL"))}
    env["NOTIFQ_API_URL"] = url
    if token is not None:
        env["NOTIFQ_TOKEN"] = token
    env.update(extra)
    return env


async def notifq(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    # In a thread, so an in-process worker keeps running on the test's event loop meanwhile.
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "notifq", *args], env=env, input=stdin,
                                   capture_output=True, text=True, timeout=90)  # fmt: skip


def _default_sigint() -> None:
    """In the child before exec: Ctrl-C's default action, whatever the test run inherited.

    `make test &` (or nohup, or CI runners) starts pytest with SIGINT ignored, an ignored signal stays
    ignored across exec, and Python then installs no KeyboardInterrupt handler: the child would never
    see the SIGINT a test sends it. (Popen's restore_signals covers SIGPIPE and SIGXFSZ only.)
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[Any]:
    """For the tests that must act on the running command (a terminal, a signal)."""
    return subprocess.Popen([sys.executable, "-m", "notifq", *args], env=env, stderr=subprocess.PIPE,
                            preexec_fn=_default_sigint, **kwargs)  # fmt: skip


@pytest.fixture
def cli_env(live_api: LiveApi, fast_auth: dict[str, str]) -> dict[str, str]:
    return _env(live_api.url, fast_auth["Authorization"].removeprefix("Bearer "))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _messages(engine: AsyncEngine, campaign_id: str) -> list[tuple[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT recipient, vars FROM messages WHERE campaign_id = :c ORDER BY id"), {"c": campaign_id}
        )
        return [(r[0], json.loads(r[1]) if isinstance(r[1], str) else r[1]) for r in rows]


# --- create and watch ---------------------------------------------------------------------------------------------


async def test_create_with_count_and_watch_completes_with_exit_0(live_api: LiveApi, cli_env: dict[str, str]) -> None:
    async with running_worker(live_api.settings):
        done = await notifq("campaign", "create", "--name", "Load", "--count", "300", "--watch", env=cli_env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert UUID.match(lines[0]), lines
    # Not a terminal: plain lines, no carriage returns, the final state, then the summary `campaign show` prints.
    assert "\r" not in done.stdout and len(lines) >= 2
    at = lines.index(f"campaign   {lines[0]}")
    final = lines[at - 1]
    assert "100%" in final and "sent 300" in final and "failed 0" in final and final.endswith("completed"), final
    shown = await notifq("campaign", "show", lines[0], env=cli_env)
    assert lines[at:] == shown.stdout.splitlines()
    assert re.search(r"^duration   \d+s, [\d.]+ msg/s on average$", shown.stdout, re.M), shown.stdout
    assert lines[-1] == "messages   sent 300"
    assert "failed" not in done.stderr  # nothing to retry, so no advice


@pytest.mark.parametrize("columns", [80, 60, 40])
async def test_watch_on_a_terminal_redraws_one_line_within_its_width(
    live_api: LiveApi, cli_env: dict[str, str], columns: int
) -> None:
    """On a TTY each update rewrites the same line with \\r, fits the terminal, and never cuts the status."""
    master, slave = pty.openpty()
    # The terminal's size both ways the child may ask (COLUMNS/LINES first, then the tty), so a COLUMNS
    # inherited from the developer's shell or the CI runner cannot change the width measured below.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**cli_env, "COLUMNS": str(columns), "LINES": "24"}
    async with running_worker(live_api.settings.with_(rate_limit=150)):  # a couple of seconds of redraws
        proc = _spawn(["campaign", "create", "--name", "Tty", "--count", "300", "--watch"], env, stdout=slave)
        os.close(slave)
        output = await asyncio.to_thread(_read_all, master)
        returncode = await asyncio.to_thread(proc.wait, 60)
    assert proc.stderr is not None
    assert returncode == 0, proc.stderr.read().decode()
    proc.stderr.close()
    screen = output.decode()
    campaign_id, progress, shown = screen.split("\r\n", 2)  # the tty turns each \n into \r\n
    assert UUID.match(campaign_id)
    redraws = [part.removesuffix("\x1b[K") for part in progress.split("\r") if part]
    assert len(redraws) >= 2, redraws
    assert all(len(r) <= columns - 1 for r in redraws), redraws
    statuses = tuple(f"  {status}" for status in CampaignStatus) + tuple(f" {status}" for status in CampaignStatus)
    assert all(r.endswith(statuses) for r in redraws), redraws  # "processin" or "comp" would fail this
    final = redraws[-1]
    assert "100%" in final and final.endswith(" completed"), final
    assert final.startswith("[" + "#" * 10) if columns == 80 else True
    assert shown.startswith(f"campaign   {campaign_id}\r\n") and "status     completed\r\n" in shown
    if columns == 80:
        assert all(len(line) <= 79 for line in shown.split("\r\n")), shown


def test_the_progress_line_drops_detail_before_it_cuts_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    running = Snapshot("processing", 1_000_000, 423_000, 1_200, 0)
    done = Snapshot("completed_with_failures", 1_000_000, 999_984, 16, 0)
    for columns in (120, 80, 60, 40, 30):
        monkeypatch.setenv("COLUMNS", str(columns))
        out = io.StringIO()
        view = ProgressView(out, interactive=True, clock=lambda: now[0])
        for snapshot in (Snapshot("processing", 1_000_000, 0, 0, 0), running, done):
            now[0] += 10.0
            view.update(snapshot)
        redraws = [part.removesuffix("\x1b[K") for part in out.getvalue().split("\r") if part]
        assert [len(r) <= columns - 1 for r in redraws] == [True] * 3, (columns, redraws)
        assert redraws[1].endswith(" processing") and redraws[2].endswith(" completed_with_failures"), redraws
        assert "42%" in redraws[1] and "100%" in redraws[2]
        if columns >= 60:
            assert "sent 423000  failed 1200" in redraws[1] and "ETA" in redraws[1]
    assert describe(running, 10.0, 0.0, width=20) == "42% processing"
    assert describe(running, 10.0, 0.0, width=5) == "42% p"  # narrower than the status: nothing else helps


def test_the_summary_gives_counts_duration_and_average_rate() -> None:
    campaign = {
        "id": "6f1c1b1e-2f9b-4d7e-9a0e-8a4f2f4b1a10", "name": "Launch", "status": "completed_with_failures",
        "channel": "email", "subject": None, "totalMessages": 10_000,
        "progress": {"pending": 0, "queued": 0, "sending": 0, "sent": 9_984, "failed": 16, "cancelled": 0},
        "createdAt": "2026-12-01T10:00:00Z", "completedAt": "2026-12-01T10:16:40Z",
    }  # fmt: skip
    text = summary(campaign)
    assert "\nduration   16m40s, 10.0 msg/s on average\n" in text
    assert text.endswith("\nmessages   sent 9984  failed 16")
    assert all(len(line) <= 80 for line in text.splitlines()), text
    hints = failure_hints(campaign)
    assert hints is not None
    assert f"  notifq campaign messages {campaign['id']} --status failed" in hints.splitlines()
    assert f"  notifq campaign retry {campaign['id']} --watch" in hints.splitlines()
    assert failure_hints({**campaign, "status": "cancelled"}) is None
    assert failure_hints({**campaign, "progress": {"sent": 10_000, "failed": 0}}) is None
    running = summary({**campaign, "status": "processing", "completedAt": None}, now=datetime(2026, 12, 1, 10, 1,
                      tzinfo=UTC))  # fmt: skip
    assert "\nduration   1m00s so far, 166.7 msg/s on average\n" in running


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except OSError:  # EIO: the child closed the terminal
        pass
    finally:
        os.close(fd)
    return b"".join(chunks)


async def test_watch_of_a_campaign_with_permanent_failures_exits_1_and_says_how_to_retry(
    live_api: LiveApi, cli_env: dict[str, str]
) -> None:
    failing = live_api.settings.with_(mock_failure_rate=1.0, max_attempts=1)
    async with running_worker(failing):
        done = await notifq("campaign", "create", "--name", "Doomed", "--count", "20", "--watch", env=cli_env)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    campaign_id = lines[0]
    final = lines[lines.index(f"campaign   {campaign_id}") - 1]
    assert "100%" in final and "failed 20" in final and final.endswith("completed_with_failures"), final
    assert "status     completed_with_failures" in lines and lines[-1] == "messages   failed 20"
    # What to do next, ready to paste (on stderr: stdout keeps the result).
    assert f"  notifq campaign messages {campaign_id} --status failed\n" in done.stderr
    assert f"  notifq campaign retry {campaign_id} --watch\n" in done.stderr

    again = await notifq("campaign", "show", campaign_id, "--watch", env=cli_env)
    assert again.returncode == 1 and "completed_with_failures" in again.stdout
    assert again.stdout.splitlines()[-10:] == lines[-10:]  # the same summary, however it was reached

    listed = await notifq("campaign", "messages", campaign_id, "--status", "failed", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "ATTEMPTS", "RECIPIENT", "LAST", "ERROR"]
    assert len(rows) == 20 and all(r.split()[1:3] == ["failed", "1"] and "example.com" in r for r in rows), rows
    none = await notifq("campaign", "messages", campaign_id, "--status", "sent", env=cli_env)
    assert none.returncode == 0 and none.stdout == "no messages with status sent\n"

    async with running_worker(live_api.settings):
        retried = await notifq("campaign", "retry", campaign_id, "--watch", env=cli_env)
    assert retried.returncode == 0, retried.stderr
    out = retried.stdout.splitlines()
    assert out[0] == "20 failed messages queued again"
    assert "status     completed" in out and out[-1] == "messages   sent 20" and retried.stderr == ""
    nothing = await notifq("campaign", "retry", campaign_id, "--json", env=cli_env)
    assert nothing.returncode == 0 and json.loads(nothing.stdout) == {"requeued": 0}
    unknown = await notifq("campaign", "retry", str(uuid.uuid4()), env=cli_env)
    assert unknown.returncode == 3 and "404 not_found" in unknown.stderr


async def test_create_from_a_csv_sends_its_columns_as_vars(
    live_api: LiveApi, cli_env: dict[str, str], engine: AsyncEngine, tmp_path: Path
) -> None:
    csv_file = tmp_path / "people.csv"
    csv_file.write_text('\ufeffTo,name,code\nana@example.com,Ana,4711\n\n"li@example.com", "Li, Jr.",0815\n')
    done = await notifq("campaign", "create", "--name", "Codes", "--recipients", str(csv_file), "--subject",
                        "Hi {{ name }}", "--body", "Your code is {{ code }}", env=cli_env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    campaign_id = done.stdout.strip()
    assert UUID.match(campaign_id)
    assert await _messages(engine, campaign_id) == [
        ("ana@example.com", {"name": "Ana", "code": "4711"}),
        ("li@example.com", {"name": "Li, Jr.", "code": "0815"}),
    ]

    # No header: the first column is the address; `-` reads stdin; --json prints the API's answer.
    done = await notifq("campaign", "create", "--name", "Plain", "--recipients", "-", "--json", env=cli_env,
                        stdin="bo@example.com,ignored\n\ncy@example.com\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["totalMessages"] == 2 and created["name"] == "Plain"
    assert await _messages(engine, created["id"]) == [("bo@example.com", None), ("cy@example.com", None)]


async def test_idempotency_key_creates_one_campaign(cli_env: dict[str, str], engine: AsyncEngine) -> None:
    args = ("campaign", "create", "--name", "Once", "--count", "3", "--idempotency-key", "launch-1")
    first, second = [await notifq(*args, env=cli_env) for _ in range(2)]
    assert first.returncode == second.returncode == 0, (first.stderr, second.stderr)
    assert first.stdout == second.stdout
    assert await row_counts(engine) == (1, 3)


def test_csv_parsing_rules() -> None:
    """Header detection is case-insensitive and positional; short rows lose their missing vars; lines are kept."""
    parsed = parse_csv("name,TO\nAna,ana@example.com\n\nLi\n")
    assert parsed.entries == [{"to": "ana@example.com", "vars": {"name": "Ana"}}, {"to": "", "vars": {"name": "Li"}}]
    assert parsed.lines == [2, 4]
    assert parse_csv("+15550000001\n+15550000002,x\n").entries == ["+15550000001", "+15550000002"]
    assert parse_csv("to\n a@example.com \n").entries == ["a@example.com"]
    assert parse_csv("\n  \n").entries == []


# --- show and list ------------------------------------------------------------------------------------------------


async def test_show_and_list_as_text_and_json(cli_env: dict[str, str]) -> None:
    ids = []
    for name in ("First", "Second"):
        done = await notifq("campaign", "create", "--name", name, "--count", "5", env=cli_env)
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())

    shown = await notifq("campaign", "show", ids[0], env=cli_env)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^name\s+First$", shown.stdout, re.M) and re.search(r"^status\s+processing$", shown.stdout, re.M)
    assert "0 of 5 finished" in shown.stdout and "queued 5" in shown.stdout

    as_json = await notifq("campaign", "show", ids[0], "--json", env=cli_env)
    campaign = json.loads(as_json.stdout)
    assert campaign["id"] == ids[0] and campaign["totalMessages"] == 5 and campaign["progress"]["queued"] == 5

    listed = await notifq("campaign", "list", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["ID", "STATUS", "SENT", "FAILED", "TOTAL", "DONE", "CREATED", "NAME"]
    assert [r.split()[0] for r in rows] == ids[::-1]  # newest first
    assert rows[0].endswith("Second")

    page = json.loads((await notifq("campaign", "list", "--json", "--limit", "1", env=cli_env)).stdout)
    assert [c["id"] for c in page["items"]] == [ids[1]] and page["nextCursor"]

    none = await notifq("campaign", "list", "--status", "completed", env=cli_env)
    assert none.returncode == 0 and none.stdout.strip() == "no campaigns with status completed"


# --- failures and exit codes --------------------------------------------------------------------------------------


async def test_a_validation_error_exits_3_with_the_api_message_and_creates_nothing(
    cli_env: dict[str, str], engine: AsyncEngine, tmp_path: Path
) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("to,name\nana@example.com,Ana\n\nnot-an-address,Bo\n")
    done = await notifq("campaign", "create", "--name", "Bad", "--recipients", str(csv_file), env=cli_env)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "422 validation_error" in done.stderr and "invalid email addresses" in done.stderr
    assert "line 4: not-an-address" in done.stderr  # pointed to by CSV line, not list index
    assert await row_counts(engine) == (0, 0)

    unknown = await notifq("campaign", "show", str(uuid.uuid4()), env=cli_env)
    assert unknown.returncode == 3 and "404 not_found" in unknown.stderr


async def test_usage_errors_exit_2(live_api: LiveApi, cli_env: dict[str, str], tmp_path: Path) -> None:
    both = await notifq("campaign", "create", "--name", "X", "--count", "1", "--recipients", "a.csv", env=cli_env)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    missing = await notifq("campaign", "create", "--name", "X", "--recipients", str(tmp_path / "nope.csv"),
                           env=cli_env)  # fmt: skip
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    (tmp_path / "empty.csv").write_text("to,name\n\n")
    empty = await notifq("campaign", "create", "--name", "X", "--recipients", str(tmp_path / "empty.csv"), env=cli_env)
    assert empty.returncode == 2 and "holds no recipients" in empty.stderr
    anonymous = await notifq("campaign", "list", env=_env(live_api.url))
    assert anonymous.returncode == 2 and "no API token" in anonymous.stderr


async def test_a_wrong_token_exits_3(live_api: LiveApi) -> None:
    done = await notifq("campaign", "list", env=_env(live_api.url, "not.a.token"))
    assert done.returncode == 3
    assert "401 unauthorized" in done.stderr and "not.a.token" not in done.stderr + done.stdout


async def test_an_api_key_from_the_environment_or_the_option_works_within_its_scopes(
    live_api: LiveApi, fast_auth: dict[str, str]
) -> None:
    async def key(*scopes: str) -> str:
        async with httpx.AsyncClient(base_url=live_api.url) as http:
            r = await http.post("/api-keys", headers=fast_auth, json={"name": "cli", "scopes": list(scopes)})
        assert r.status_code == 201, r.text
        return str(r.json()["secret"])

    writer, reader = await key("campaigns:write"), await key("read")
    created = await notifq("campaign", "create", "--name", "By key", "--count", "1",
                           env=_env(live_api.url, NOTIFQ_API_KEY=writer))  # fmt: skip
    assert created.returncode == 0, created.stderr
    campaign_id = created.stdout.strip()
    assert UUID.match(campaign_id)
    # The key is preferred to a login token in the environment; --token on the command line wins over both.
    shown = await notifq("campaign", "show", campaign_id, env=_env(live_api.url, "not.a.token", NOTIFQ_API_KEY=reader))
    assert shown.returncode == 0 and "By key" in shown.stdout, shown.stderr
    listed = await notifq("campaign", "list", "--api-key", reader, env=_env(live_api.url))
    assert listed.returncode == 0 and campaign_id in listed.stdout, listed.stderr
    refused = await notifq("campaign", "list", env=_env(live_api.url, NOTIFQ_API_KEY=writer))
    assert refused.returncode == 3 and "403 forbidden" in refused.stderr and "read" in refused.stderr
    assert writer not in refused.stderr + refused.stdout
    overridden = await notifq(
        "campaign", "list", "--token", "not.a.token", env=_env(live_api.url, NOTIFQ_API_KEY=reader)
    )
    assert overridden.returncode == 3 and "401 unauthorized" in overridden.stderr
    not_a_key = await notifq("campaign", "list", env=_env(live_api.url, NOTIFQ_API_KEY="eyJ.x.y"))
    assert not_a_key.returncode == 2 and "not an API key" in not_a_key.stderr
    both = await notifq("campaign", "list", "--api-key", reader, "--token", "x", env=_env(live_api.url))
    assert both.returncode == 2 and "not both" in both.stderr
    helped = await notifq("campaign", "list", "--help", env=_env(live_api.url))
    assert "NOTIFQ_API_KEY" in helped.stdout and "--api-key" in helped.stdout


def test_the_clients_key_prefix_is_the_servers() -> None:
    assert API_KEY_PREFIX == KEY_PREFIX


async def test_an_unreachable_api_exits_4(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "NOTIFQ_API_URL": f"http://127.0.0.1:{_free_port()}"}
    done = await notifq("campaign", "create", "--name", "X", "--count", "1", env=env)
    assert done.returncode == 4 and "cannot reach the API" in done.stderr
    assert "Traceback" not in done.stderr


def _run(args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    """The CLI against a port nothing listens on: any request would exit 4, so exit 2 proves none was made."""
    env = _env(f"http://127.0.0.1:{_free_port()}", "some-token")
    done = subprocess.run([sys.executable, "-m", "notifq", *args], env=env, input=stdin, capture_output=True,
                          timeout=60)  # fmt: skip
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--count", "1", "--idempotency-key", "ключ-1"], b"", "printable ASCII"),  # httpx: UnicodeEncodeError
        (["--count", "1", "--idempotency-key", "a\x01b"], b"", "printable ASCII"),  # httpx: LocalProtocolError
        (["--count", "1", "--idempotency-key", ""], b"", "printable ASCII"),
        (["--recipients", "-", "--body-file", "-"], b"a@example.com\n", "cannot both read stdin"),
        (["--recipients", "-"], b"to\n\xffa@example.com\n", "not UTF-8"),
        (["--count", "1", "--body-file", "-"], b"\xfe\xff", "not UTF-8"),
        (["--count", "1", "--api-url", "http://[::1"], b"", "API URL"),  # ValueError from urlsplit
        (["--count", "1", "--api-url", "http://h:notaport"], b"", "API URL"),  # httpx.InvalidURL
    ],
)
def test_bad_input_exits_2_before_any_request(args: list[str], stdin: bytes, message: str) -> None:
    done = _run(["campaign", "create", "--name", "X", *args], stdin)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_the_idempotency_key_rule_is_the_servers() -> None:
    for key in ("launch-1", "x" * 255, "x" * 256, "", "a b", "ключ", "a\x01", "tab\there", "del\x7f"):
        try:
            idempotency.check_key(key)
            server_accepts = True
        except ValidationError:
            server_accepts = False
        try:
            check_idempotency_key(key)
            client_accepts = True
        except UsageError:
            client_accepts = False
        assert client_accepts == server_accepts, key


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("raised", "code"), [(EOFError, 2), (KeyboardInterrupt, 130)])
def test_login_ended_at_the_password_prompt_exits_cleanly(
    raised: type[BaseException], code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl-D (EOFError) or Ctrl-C at getpass's prompt: a message and an exit code, not a traceback."""

    def prompt(text: str) -> str:
        raise raised

    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr(getpass, "getpass", prompt)
    login = commands.guarded(commands.cmd_login)
    with pytest.raises(SystemExit) as exited:
        login(argparse.Namespace(email="a@example.com", api_url="http://127.0.0.1:9"))
    assert exited.value.code == code
    err = capsys.readouterr().err
    assert err.startswith("\n") and ("no password given" if code == 2 else "interrupted") in err


def test_json_and_progress_lines_escape_what_could_drive_a_terminal() -> None:
    value = {"name": "DEL\x7f CSI\x9b[2J bidi\u202e nl\n é 😀", "odd": "\ud800", "tag": "\U000e0001"}
    shown = terminal_safe_json(value)
    assert all(c.isprintable() or c == "\n" for c in shown), shown
    assert "é 😀" in shown and "\\u007f" in shown and "\\u009b" in shown and "\\u202e" in shown
    assert "\\udb40\\udc01" in shown  # beyond U+FFFF: a surrogate pair, as JSON spells it
    assert json.loads(shown) == value
    line = describe(Snapshot("processing\x1b[2J", 10, 1, 0, 0), 1.0, 0.0)
    assert "\x1b" not in line and line.endswith("processing\\x1b[2J")


def test_rate_and_eta_never_go_negative_when_failed_messages_are_requeued() -> None:
    meter = RateMeter()
    for at, finished in ((0.0, 0), (1.0, 50), (2.0, 100), (3.0, 60)):  # a retry requeued 40 failed messages
        meter.add(at, finished)
        assert (meter.rate() or 0) >= 0
    assert meter.rate() is None  # measured afresh from the drop
    meter.add(4.0, 70)
    assert meter.rate() == 10
    line = describe(Snapshot("processing", 100, 50, 10, 0), -5.0, 3.0)
    assert "0 msg/s" in line and "ETA -" in line and "-5" not in line
    assert Snapshot("processing", 10, 30, 0, 0).percent == 100  # counts beyond the total stay within the bar


def test_watch_rides_out_gateway_errors_and_says_why_a_campaign_waits() -> None:
    now = [0.0]

    def campaign(status: str, sent: int, **extra: Any) -> dict[str, Any]:
        return {"status": status, "totalMessages": 10, "progress": {"sent": sent}, **extra}

    answers: list[Any] = [
        campaign("scheduled", 0, sendAt="2030-01-01T09:00:00Z"),
        campaign("scheduled", 0, sendAt="2030-01-01T09:00:00Z"),
        ApiError(502, "http_502", "Bad Gateway"),
        ApiError(503, "unavailable", "down"),
        ApiError(504, "http_504", "Gateway Timeout"),
        Unreachable("refused"),
        campaign("processing", 4),
        campaign("paused", 5),
        campaign("paused", 5),
        campaign("completed", 10),
    ]

    def fetch() -> Mapping[str, Any]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            now[0] += 5  # each failed request took a while
            raise answer
        return dict(answer)

    def sleep(seconds: float) -> None:
        now[0] += seconds

    out = io.StringIO()
    final = watch(fetch, ProgressView(out, interactive=False, clock=lambda: now[0]), sleep=sleep, clock=lambda: now[0])
    assert final["status"] == "completed" and not answers
    lines = out.getvalue().splitlines()
    notes = [line for line in lines if "waiting" in line]
    assert notes == [
        "the campaign is scheduled for 2030-01-01 09:00:00Z; waiting for it to start "
        "(Ctrl-C stops watching, not the campaign)",
        "the campaign is paused; waiting for it to be resumed (Ctrl-C stops watching, not the campaign)",
    ]
    assert lines[-1].endswith("completed")

    # A 500 is a real refusal; a longer outage than the tolerance ends the watch with the last error.
    answers[:] = [campaign("processing", 1), ApiError(500, "internal_error", "boom")]
    with pytest.raises(ApiError):
        watch(fetch, ProgressView(io.StringIO(), interactive=False), sleep=sleep, clock=lambda: now[0])
    answers[:] = [campaign("processing", 1), *[ApiError(503, "unavailable", "down")] * 10]
    with pytest.raises(ApiError):
        watch(fetch, ProgressView(io.StringIO(), interactive=False), sleep=sleep, clock=lambda: now[0])
    assert OUTAGE_TOLERANCE_SECONDS == 30
    assert len(answers) == 4  # the 6th failure (6 x 5.5 s since the last answer) passed 30 s


async def test_a_reader_that_leaves_early_gives_exit_141_quietly(cli_env: dict[str, str]) -> None:
    """`notifq … | head`: 141 (128 + SIGPIPE) as a shell reports for other commands, not 1 ("failures")."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        args = [sys.executable, "-m", "notifq", "campaign", "list", "--json"]
        done = await asyncio.to_thread(subprocess.run, args, env=cli_env, stdout=write_end, stderr=subprocess.PIPE,
                                       text=True, timeout=60)  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert done.stderr == ""


async def test_ctrl_c_while_watching_exits_130_without_a_traceback(cli_env: dict[str, str]) -> None:
    created = await notifq("campaign", "create", "--name", "Stuck", "--count", "5", env=cli_env)  # no worker
    proc = _spawn(["campaign", "show", created.stdout.strip(), "--watch"], cli_env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        first = await asyncio.to_thread(proc.stdout.readline)
        assert "0%" in first and "processing" in first
        await asyncio.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.to_thread(proc.communicate, None, 30)
    finally:
        if proc.poll() is None:  # the signal went unheard: do not leave the watch running after the test
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err


# --- login and workers --------------------------------------------------------------------------------------------


async def test_login_prints_a_token_that_works(live_api: LiveApi, admin_id: uuid.UUID) -> None:
    env = _env(live_api.url)
    done = await notifq("login", "--email", ADMIN_EMAIL, env=env, stdin=ADMIN_PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n" and ADMIN_PASSWORD not in done.stdout + done.stderr
    listed = await notifq("campaign", "list", env=_env(live_api.url, token))
    assert listed.returncode == 0 and "no campaigns" in listed.stdout

    wrong = await notifq("login", "--email", ADMIN_EMAIL, env=env, stdin="wrong password\n")
    assert wrong.returncode == 3 and "401 unauthorized" in wrong.stderr and wrong.stdout == ""

    # No token, but the admin's credentials in the environment: the command logs in first.
    by_env = await notifq("campaign", "list", env=_env(live_api.url, NOTIFQ_ADMIN_EMAIL=ADMIN_EMAIL,
                                                       NOTIFQ_ADMIN_PASSWORD=ADMIN_PASSWORD))  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr


async def test_workers_lists_the_running_worker(live_api: LiveApi, cli_env: dict[str, str]) -> None:
    async with running_worker(live_api.settings):
        deadline = time.monotonic() + 30
        while True:
            as_json = await notifq("workers", "--json", env=cli_env)
            assert as_json.returncode == 0, as_json.stderr
            answer = json.loads(as_json.stdout)
            if answer["workers"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        shown = await notifq("workers", env=cli_env)
    assert [w["pid"] for w in answer["workers"]] == [os.getpid()]  # the in-process worker
    assert set(answer["queue"]) >= {"bulkJobs", "transactionalJobs", "queuedMessages", "scheduledMessages"}
    assert shown.returncode == 0, shown.stderr
    header, row, *rest = shown.stdout.splitlines()
    assert header.split()[:3] == ["ID", "HOST", "PID"] and str(os.getpid()) in row.split()
    assert rest[-1].startswith("queue: ")
