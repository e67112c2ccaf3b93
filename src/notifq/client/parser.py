"""How the client commands are spelled: `notifq campaign …`, `notifq workers`, `notifq login` (argparse).

What each command does is in commands.py; `register` adds them to the `notifq` parser (cli.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from notifq.client.commands import (
    DEFAULT_API_URL,
    DEFAULT_EMAIL,
    cmd_create,
    cmd_list,
    cmd_login,
    cmd_messages,
    cmd_retry,
    cmd_show,
    cmd_workers,
    guarded,
)
from notifq.vocabulary import CampaignStatus, Channel, MessageStatus

CAMPAIGN_STATUSES = tuple(CampaignStatus)
MESSAGE_STATUSES = tuple(MessageStatus)

EXIT_CODES = """\
exit codes:
  0    success; with --watch: the campaign completed with no failed message
  1    with --watch: the campaign ended with failed messages (completed_with_failures) or was cancelled
  2    usage error: bad options, an unreadable or empty CSV, no credentials
  3    the API refused the request (4xx/5xx); its error code and message go to stderr
  4    the API is unreachable (connection refused, DNS, timeout)
  130  interrupted (Ctrl-C)
  141  the reader of stdout went away (`notifq campaign list | head -1`); nothing more is printed"""

CONNECTION = """\
connection:
  --api-url, else NOTIFQ_API_URL, else http://127.0.0.1:8000
  --api-key or --token, else NOTIFQ_API_KEY, else NOTIFQ_TOKEN, else a login with NOTIFQ_ADMIN_EMAIL
  and NOTIFQ_ADMIN_PASSWORD
  e.g. export NOTIFQ_TOKEN=$(notifq login --email admin@notifq.dev)
  or   export NOTIFQ_API_KEY=nq_…   (an API key: POST /api-keys, or the dashboard's API keys page)
  an API key needs the scopes of the commands it runs: `campaign create` and `campaign retry`
  campaigns:write (with --watch, read too); `campaign show/list/messages` and `workers` read
  (prefer the environment to --api-key/--token: command lines are visible to other users in `ps`)"""

WATCH_HELP = (
    "follow the campaign to its end (polling about every 0.5 s): a live progress bar on a terminal, "
    "otherwise one line at most every second plus the final state; the exit code then tells the outcome"
)

RECIPIENTS_HELP = (
    "CSV of recipients (`-` for stdin). A header row naming a `to` column makes the other named columns "
    "per-recipient template variables, used as {{ column }} in --subject/--body; without such a header, the "
    "first column is the address and the others are ignored. Comma-separated, UTF-8; blank lines are skipped."
)


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _common(api_only: bool = False) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--api-url", metavar="URL", help=f"the API (env NOTIFQ_API_URL; default {DEFAULT_API_URL})")
    if not api_only:
        # No environment default here: argparse would print the token in --help.
        parent.add_argument("--token", metavar="TOKEN", help="bearer token (env NOTIFQ_TOKEN; see below)")
        parent.add_argument("--api-key", metavar="KEY", help="API key, nq_… (env NOTIFQ_API_KEY; see below)")
        parent.add_argument("--json", action="store_true", help="print the API's JSON instead of text")
    return parent


def _positive(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return number


def register(sub: Any) -> None:
    """Adds `campaign`, `workers` and `login` to the `notifq` subparsers."""
    epilog = f"{CONNECTION}\n\n{EXIT_CODES}"
    common = _common()
    campaign = sub.add_parser("campaign", help="create, show, list and watch campaigns through the API",
                              description="Campaigns through the HTTP API.", epilog=epilog,
                              formatter_class=_formatter)  # fmt: skip
    actions = campaign.add_subparsers(dest="action", required=True, metavar="{create,show,list,messages,retry}")

    p = actions.add_parser("create", parents=[common], help="create a campaign; prints its id",
                           description="Create a campaign; prints its id (with --json the API's answer).",
                           epilog=epilog, formatter_class=_formatter)  # fmt: skip
    p.add_argument("--name", required=True, help="campaign name (one line, up to 200 characters)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--count", type=_positive, metavar="K",
                     help="load test: K synthetic recipients that all go to the mock provider")  # fmt: skip
    who.add_argument("--recipients", metavar="FILE.csv", help=RECIPIENTS_HELP)
    p.add_argument("--channel", choices=tuple(Channel), default=Channel.EMAIL, help="default: email")
    p.add_argument("--subject", help="subject template (one line); none by default")
    text = p.add_mutually_exclusive_group()
    text.add_argument("--body", help="body template; none by default")
    text.add_argument("--body-file", metavar="FILE", help="read the body template from FILE (`-` for stdin)")
    p.add_argument("--send-at", metavar="ISO", help="schedule, e.g. 2026-12-01T09:00:00Z")
    p.add_argument("--idempotency-key", metavar="KEY",
                   help="sent as Idempotency-Key: the same command with the same key creates nothing new")  # fmt: skip
    p.add_argument("--watch", action="store_true", help=WATCH_HELP)
    p.set_defaults(func=guarded(cmd_create))

    p = actions.add_parser("show", parents=[common], help="a campaign's status and progress",
                           description="A campaign's status, counts by status, duration, average rate, progress.",
                           epilog=epilog, formatter_class=_formatter)  # fmt: skip
    p.add_argument("id", help="the campaign id")
    p.add_argument("--watch", action="store_true", help=WATCH_HELP)
    p.set_defaults(func=guarded(cmd_show))

    p = actions.add_parser("list", parents=[common], help="campaigns, newest first",
                           description="Campaigns, newest first.", epilog=epilog,
                           formatter_class=_formatter)  # fmt: skip
    p.add_argument("--status", choices=CAMPAIGN_STATUSES, help="only campaigns with this status")
    p.add_argument("--limit", type=_positive, default=20, help="how many (1-500; default 20)")
    p.set_defaults(func=guarded(cmd_list))

    p = actions.add_parser("messages", parents=[common], help="a campaign's messages, with their last error",
                           description="A campaign's messages in creation order: status, attempts, recipient and "
                           "last error\n(a message's whole history: GET /notifications/{id}).", epilog=epilog,
                           formatter_class=_formatter)  # fmt: skip
    p.add_argument("id", help="the campaign id")
    p.add_argument("--status", choices=MESSAGE_STATUSES, help="only messages with this status, e.g. failed")
    p.add_argument("--limit", type=_positive, default=100, help="how many (1-1000; default 100)")
    p.set_defaults(func=guarded(cmd_messages))

    p = actions.add_parser("retry", parents=[common], help="queue a campaign's failed messages again",
                           description="Queue a campaign's failed messages again, with fresh attempts; prints how "
                           "many.", epilog=epilog, formatter_class=_formatter)  # fmt: skip
    p.add_argument("id", help="the campaign id")
    p.add_argument("--watch", action="store_true", help=WATCH_HELP)
    p.set_defaults(func=guarded(cmd_retry))

    p = sub.add_parser("workers", parents=[common], help="running workers and the queue depth, through the API",
                       description="Running workers (from GET /workers) and the queue depth.", epilog=epilog,
                       formatter_class=_formatter)  # fmt: skip
    p.set_defaults(func=guarded(cmd_workers))

    p = sub.add_parser("login", parents=[_common(api_only=True)], help="log in to the API and print a token",
                       description="Log in and print just the token (password from the terminal, or one line on "
                       "stdin):\n  export NOTIFQ_TOKEN=$(notifq login --email admin@notifq.dev)",
                       epilog=EXIT_CODES, formatter_class=_formatter)  # fmt: skip
    p.add_argument("--email", help=f"the admin's email (env NOTIFQ_ADMIN_EMAIL; default {DEFAULT_EMAIL})")
    p.set_defaults(func=guarded(cmd_login))
