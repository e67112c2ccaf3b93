"""`notifq campaign create|show|list|messages|retry`, `notifq workers` and `notifq login`: the API from a shell.

Every command returns an exit code that scripts can act on without parsing output (see
parser.EXIT_CODES); stdout carries only the result (an id, a table, JSON), diagnostics go to
stderr. How the commands are spelled on the command line is in parser.py.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from notifq.client.api import (
    API_KEY_PREFIX,
    ApiClient,
    ApiError,
    ClientError,
    Unreachable,
    UsageError,
    check_idempotency_key,
)
from notifq.client.progress import WATCH_REQUEST_SECONDS, ProgressView, Snapshot, exit_code, watch
from notifq.client.recipients import Recipients, read_recipients, read_stdin
from notifq.client.report import failure_hints, summary
from notifq.client.tables import age, clean, table, timestamp

DEFAULT_API_URL = "http://127.0.0.1:8000"
DEFAULT_EMAIL = "admin@notifq.dev"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
# 128 + SIGPIPE, what a shell reports for a command killed by SIGPIPE (`yes | head`): not 1, which means
# "the campaign ended with failures". Python ignores SIGPIPE, so this is set by hand.
EXIT_BROKEN_PIPE = 141


# --- connection -------------------------------------------------------------------------------------------------


def _api_url(args: argparse.Namespace) -> str:
    return str(args.api_url or os.environ.get("NOTIFQ_API_URL") or DEFAULT_API_URL)


def _api_key(value: str | None, where: str) -> str | None:
    if value and not value.strip().startswith(API_KEY_PREFIX):
        raise UsageError(f"{where} is not an API key (they start with {API_KEY_PREFIX}); a login token goes in --token")
    return value


def _token(args: argparse.Namespace) -> str | None:
    """--api-key or --token, else NOTIFQ_API_KEY, else NOTIFQ_TOKEN (the command line wins over the environment)."""
    key = _api_key(getattr(args, "api_key", None), "--api-key")
    if key and args.token:
        raise UsageError("pass --api-key or --token, not both")
    return (
        key
        or args.token
        or _api_key(os.environ.get("NOTIFQ_API_KEY"), "NOTIFQ_API_KEY")
        or os.environ.get("NOTIFQ_TOKEN")
    )


def _connect(args: argparse.Namespace) -> ApiClient:
    """A client carrying a token or an API key: given, from the environment, or by logging in as the admin."""
    client = ApiClient(_api_url(args))
    try:
        token = _token(args)
        if not token:
            email, password = os.environ.get("NOTIFQ_ADMIN_EMAIL"), os.environ.get("NOTIFQ_ADMIN_PASSWORD")
            if not (email and password):
                raise UsageError(
                    "no API token: pass --token or set NOTIFQ_TOKEN (`notifq login` prints one), pass --api-key "
                    "or set NOTIFQ_API_KEY (an API key, nq_…), or set NOTIFQ_ADMIN_EMAIL and NOTIFQ_ADMIN_PASSWORD"
                )
            token = client.login(email, password)
        client.use_token(token)
    except BaseException:
        client.close()
        raise
    return client


def _print_json(value: Any) -> None:
    print(terminal_safe_json(value))


def terminal_safe_json(value: Any) -> str:
    """Indented JSON that keeps readable non-ASCII text but escapes what tables.clean escapes.

    json.dumps escapes only C0 controls; DEL, C1 controls (U+009B is a CSI on many terminals), bidi overrides
    and lone surrogates would reach the terminal raw. Outside strings the output is printable ASCII, spaces
    and the indentation's newlines, so every other non-printable character is inside a string, where a
    \\u escape (json.dumps of the one character: a surrogate pair beyond U+FFFF) means the same.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else json.dumps(c)[1:-1] for c in text)


def _view(stream: Any) -> ProgressView:
    return ProgressView(stream, interactive=stream.isatty())


# --- campaign create ----------------------------------------------------------------------------------------------


def _campaign_body(args: argparse.Namespace) -> tuple[dict[str, Any], Recipients | None]:
    body: dict[str, Any] = {"name": args.name, "channel": args.channel}
    if args.body_file == "-" and args.recipients == "-":
        # The first reader would take all of stdin and leave the other nothing.
        raise UsageError("--recipients - and --body-file - cannot both read stdin; give one of them a file")
    if args.body_file == "-":
        args.body = read_stdin()
    elif args.body_file is not None:
        try:
            args.body = Path(args.body_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {args.body_file}: {exc}") from None
    for field, value in (("subject", args.subject), ("body", args.body), ("sendAt", args.send_at)):
        if value is not None:
            body[field] = value
    if args.count is not None:
        body["recipientCount"] = args.count
        return body, None
    recipients = read_recipients(args.recipients)
    body["recipients"] = recipients.entries
    return body, recipients


def cmd_create(args: argparse.Namespace) -> int:
    if args.idempotency_key is not None:
        check_idempotency_key(args.idempotency_key)  # before reading stdin or logging in
    body, recipients = _campaign_body(args)
    with _connect(args) as client:
        try:
            campaign = client.create_campaign(body, args.idempotency_key)
        except ApiError as exc:
            _report(exc, recipients)
            return EXIT_REFUSED
        campaign_id = campaign.get("id")
        if not isinstance(campaign_id, str):
            raise ApiError(202, "bad_response", "the API's answer holds no campaign id")
        if not args.watch:
            if args.json:
                _print_json(campaign)
            else:
                print(clean(campaign_id))
            return EXIT_OK
        # With --json stdout stays one JSON document: the progress goes to stderr.
        if not args.json:
            print(clean(campaign_id), flush=True)
        return _watched(client, campaign_id, args.json, campaign)


# --- campaign show / list / messages / retry ----------------------------------------------------------------------


def _watcher(client: ApiClient, campaign_id: str) -> Callable[[], Mapping[str, Any]]:
    """One poll of a watch: a short timeout, so a hung request cannot outlast watch()'s outage tolerance."""
    return lambda: client.campaign(campaign_id, timeout=WATCH_REQUEST_SECONDS)


def _watched(client: ApiClient, campaign_id: str, as_json: bool, first: Mapping[str, Any] | None = None) -> int:
    """Follow the campaign to its end, then show it as `campaign show` does; the exit code tells the outcome."""
    final = watch(_watcher(client, campaign_id), _view(sys.stderr if as_json else sys.stdout), first)
    _show(final, as_json)
    return exit_code(Snapshot.of(final))


def _show(campaign: Mapping[str, Any], as_json: bool) -> None:
    """The summary on stdout; the commands for remaining failures on stderr (with --json, only the JSON)."""
    if as_json:
        _print_json(campaign)
        return
    print(summary(campaign), flush=True)
    hints = failure_hints(campaign)
    if hints:
        print(hints, file=sys.stderr)


def cmd_show(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        campaign = client.campaign(args.id)
        if args.watch:
            return _watched(client, args.id, args.json, campaign)
    _show(campaign, args.json)
    return EXIT_OK


def cmd_messages(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        page = client.messages(args.id, status=args.status, limit=args.limit)
    if args.json:
        _print_json(page)
        return EXIT_OK
    items = page.get("items") or []
    if not items:
        print("no messages" + (f" with status {args.status}" if args.status else ""))
        return EXIT_OK
    rows = [[m.get("id"), m.get("status"), m.get("attempts"), m.get("recipient"), m.get("lastError")] for m in items]
    print(table(["ID", "STATUS", "ATTEMPTS", "RECIPIENT", "LAST ERROR"], rows, numeric=(0, 2)))
    if page.get("nextCursor"):
        print("(more messages: raise --limit, up to 1000)", file=sys.stderr)
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    """Prints how many messages went back to the queue (with --json the API's answer, or with --watch the
    final campaign)."""
    with _connect(args) as client:
        answer = client.retry(args.id)
        requeued = answer.get("requeued")
        if not args.json:
            print(f"{clean(requeued)} failed message{'' if requeued == 1 else 's'} queued again", flush=True)
        if args.watch:
            return _watched(client, args.id, args.json)
    if args.json:
        _print_json(answer)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        page = client.campaigns(status=args.status, limit=args.limit)
    if args.json:
        _print_json(page)
        return EXIT_OK
    items = page.get("items") or []
    if not items:
        print("no campaigns" + (f" with status {args.status}" if args.status else ""))
        return EXIT_OK
    rows = []
    for c in items:
        s = Snapshot.of(c)
        rows.append([c.get("id"), c.get("status"), s.sent, s.failed, s.total, f"{s.percent}%",
                     timestamp(c.get("createdAt")), c.get("name")])  # fmt: skip
    print(table(["ID", "STATUS", "SENT", "FAILED", "TOTAL", "DONE", "CREATED", "NAME"], rows, numeric=(2, 3, 4, 5)))
    if page.get("nextCursor"):
        print("(more campaigns: raise --limit, up to 500)", file=sys.stderr)
    return EXIT_OK


# --- workers ------------------------------------------------------------------------------------------------------


def cmd_workers(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        answer = client.workers()
    if args.json:
        _print_json(answer)
        return EXIT_OK
    workers = answer.get("workers") or []
    if workers:
        rows = [[w.get("id"), w.get("host"), w.get("pid"), age(w.get("startedAt")), age(w.get("lastSeen")),
                 _rate(w.get("ratePerSecond")), w.get("inFlight"), w.get("sent"), w.get("failed"), w.get("retried")]
                for w in workers]  # fmt: skip
        headers = ["ID", "HOST", "PID", "STARTED", "LAST SEEN", "MSG/S", "IN FLIGHT", "SENT", "FAILED", "RETRIED"]
        print(table(headers, rows, numeric=(2, 5, 6, 7, 8, 9)))
    else:
        print("no workers are running")
    queue = answer.get("queue") or {}
    messages = [f"{clean(queue[key])} {label}" for key, label in
                (("queuedMessages", "queued"), ("sendingMessages", "sending"), ("scheduledMessages", "scheduled"))
                if key in queue]  # fmt: skip
    print(
        f"\nqueue: messages {', '.join(messages) or '-'}; jobs {clean(queue.get('bulkJobs'))} bulk, "
        f"{clean(queue.get('transactionalJobs'))} transactional; in flight {clean(answer.get('inFlight'))}"
    )
    return EXIT_OK


def _rate(value: Any) -> Any:
    return f"{value:.1f}" if isinstance(value, int | float) and not isinstance(value, bool) else value


# --- login --------------------------------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    email = args.email or os.environ.get("NOTIFQ_ADMIN_EMAIL") or DEFAULT_EMAIL
    # getpass prompts on the terminal itself, so stdout keeps nothing but the token.
    tty = sys.stdin is not None and sys.stdin.isatty()
    try:
        password = getpass.getpass(f"password for {email}: ") if tty else _password_line()
    except (EOFError, KeyboardInterrupt) as exc:
        if tty:
            print(file=sys.stderr)  # the prompt's line was left open: the message starts on its own
        if isinstance(exc, KeyboardInterrupt):
            raise  # 130, by guarded
        raise UsageError("no password given (end of input)") from None
    if not password:
        raise UsageError("empty password")
    with ApiClient(_api_url(args)) as client:
        print(client.login(email, password))
    return EXIT_OK


def _password_line() -> str:
    """One line of stdin (`echo "$PASSWORD" | notifq login`); empty at end of input."""
    if sys.stdin is None:
        return ""
    try:
        line = sys.stdin.buffer.readline().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the password on stdin is not UTF-8 text") from None
    return line.rstrip("\r\n")


# --- errors and exit codes ----------------------------------------------------------------------------------------


def _report(exc: ApiError, recipients: Recipients | None = None) -> None:
    """The API's code and message; bad recipients are also pointed to by CSV line."""
    print(f"notifq: the API refused the request ({exc.status} {clean(exc.code)}): {clean(exc.message)}",
          file=sys.stderr)  # fmt: skip
    if exc.retry_after:
        print(f"notifq: retry after {clean(exc.retry_after)} s", file=sys.stderr)
    details = exc.details if isinstance(exc.details, dict) else {}
    offenders = [*(details.get("invalid") or []), *(details.get("missingVariables") or [])]
    if recipients is not None and offenders:
        for item in offenders:
            line = recipients.line_of(item.get("index")) if isinstance(item, dict) else None
            if line is not None:
                what = item.get("value", item.get("to"))
                missing = item.get("variables")
                extra = f" lacks {', '.join(map(clean, missing))}" if isinstance(missing, list) else ""
                print(f"  line {line}: {clean(what)}{extra}", file=sys.stderr)
    elif details:
        print(f"  details: {clean(json.dumps(details, ensure_ascii=False)[:1000])}", file=sys.stderr)


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], None]:
    def run(args: argparse.Namespace) -> None:
        try:
            code = command(args)
            # Flushed here, not at exit: stdout into a pipe is buffered, and a reader that already left would
            # otherwise raise at interpreter shutdown, past the handler below ("Exception ignored", exit 120).
            sys.stdout.flush()
        except UsageError as exc:
            print(f"notifq: {exc}", file=sys.stderr)
            code = EXIT_USAGE
        except ApiError as exc:
            _report(exc)
            code = EXIT_REFUSED
        except Unreachable as exc:
            print(f"notifq: {exc}", file=sys.stderr)
            code = EXIT_UNREACHABLE
        except ClientError as exc:  # pragma: no cover - every subclass is handled above
            print(f"notifq: {exc}", file=sys.stderr)
            code = EXIT_REFUSED
        except KeyboardInterrupt:
            print("notifq: interrupted", file=sys.stderr)
            code = EXIT_INTERRUPTED
        except BrokenPipeError:
            # `notifq campaign list | head`: the reader left; say nothing, and keep Python from complaining at exit.
            # 141 (128 + SIGPIPE) as for any command cut off by its reader; 1 would mean "ended with failures".
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = EXIT_BROKEN_PIPE
        sys.exit(code)

    return run
