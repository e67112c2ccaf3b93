"""Structured logs: one JSON object per line, with the ids that tie a line to a campaign or message.

Call sites pass ids through `extra={"campaign_id": ..., "message_id": ...}`; the formatter
copies the known keys (CONTEXT_KEYS) into the object. The API key a request authenticated with
(`API_KEY_ID`, set by the API for each request) goes on every line logged while serving it.
Every line, exception text included, goes through `redact()`, so a password, token or
credentialed URL that slips into a message (a driver's error quoting its DSN, say) is masked
before it leaves the process.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

CONTEXT_KEYS = ("campaign_id", "message_id", "worker_id", "admin_id", "api_key_id", "provider", "attempt", "count")
API_KEY_ID: ContextVar[str | None] = ContextVar("notifq_api_key_id", default=None)
MASK = "***"
_SECRET_NAMES = r"password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|authorization"
# The name may end a longer one (SMTP_PASSWORD, access_token, client_secret: `_` is a word
# character, so \b would not match there) and carry a suffix (passwordHash).
_SECRET_ASSIGNMENT = rf"""(?i)(?P<keep>(?<![a-z0-9])(?:{_SECRET_NAMES})[\w-]*["']?\s*[:=]\s*["']?)[^\s"',;&}}]+"""
_PATTERNS = [
    # scheme://user:password@host -> scheme://user:***@host (up to the last @: passwords may hold one)
    (re.compile(r"(?P<keep>\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s/]*@"), rf"\g<keep>{MASK}@"),
    # An Authorization header's whole value (Bearer, Basic, anything), a lone bearer token, bare JWTs
    (re.compile(r"""(?i)(?P<keep>\bauthorization["']?\s*[:=]\s*["']?)[^"'\r\n,;}]+"""), rf"\g<keep>{MASK}"),
    (re.compile(r"(?i)(?P<keep>\bbearer\s+)[\w.~+/-]+=*"), rf"\g<keep>{MASK}"),
    (re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+"), MASK),
    (re.compile(r"\bnq_[\w-]{43}"), MASK),  # an API key's secret (api_keys.new_secret)
    # password=..., "secret": "...", token: ..., api_key=...
    (re.compile(_SECRET_ASSIGNMENT), rf"\g<keep>{MASK}"),
]


def redact(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestContext(logging.Filter):
    """Adds the request's API key id (when it has one) to each record, in the context that logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "api_key_id", None) is None:
            record.api_key_id = API_KEY_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": redact(record.getMessage()),
        }
        for key in CONTEXT_KEYS:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value if isinstance(value, int | float | bool) else redact(str(value))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class RedactingTextFormatter(logging.Formatter):
    """The human-readable format (NOTIFQ_LOG_FORMAT=text), masked the same way."""

    def format(self, record: logging.LogRecord) -> str:
        # One record, one line: a newline in logged data (an email typed at login) cannot forge a record.
        line = super().format(record).replace("\r", "\\r").replace("\n", "\\n")
        context = " ".join(f"{k}={record.__dict__[k]}" for k in CONTEXT_KEYS if record.__dict__.get(k) is not None)
        return redact(f"{line} {context}" if context else line)


def setup_logging(log_format: str = "json", level: str = "INFO") -> None:
    """Root handler on stderr; uvicorn and arq loggers propagate into it (uvicorn runs with log_config=None)."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(RedactingTextFormatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"))
    handler.addFilter(RequestContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("arq").setLevel(logging.WARNING)
