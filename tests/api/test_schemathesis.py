"""Schemathesis against the real API, served by `notifq api` on 127.0.0.1 over real PostgreSQL and Redis.

The run uses schemathesis' own CLI (`st run`, the reference engine: examples, coverage, fuzzing
and stateful phases) with every check on: not_a_server_error (any 5xx, 503 included, is a
failure), status_code_conformance, content_type_conformance, response_headers_conformance,
response_schema_conformance, negative_data_rejection, positive_data_acceptance,
missing_required_header, unsupported_method, allow_header_conformance, use_after_free,
ensure_resource_availability, ignored_auth and object_level_authorization.

Scope, not leniency:
- Excluded: every operation whose answer is `text/event-stream` (server-sent events never end),
  POST /auth/logout (it would revoke the token under test) and GET /ws (a WebSocket upgrade).
  The dashboard (GET /) is in.
- Bounded for a 2-core machine: a few dozen examples per operation, short stateful scenarios,
  deterministic generation (the same cases every run), a 30 s limit per request and a hard
  limit on the whole run.
- Every generated request gets an Idempotency-Key of its own (`unique_idempotency_keys`):
  otherwise two different bodies share a key and the documented 422 `key_reused` reads as a
  valid request refused.
- Stateful links are inferred from `Location` headers only: links inferred from response
  fields follow a `null` campaignId as the literal path `/campaigns/None`, which is
  schemathesis' artifact, not the API's.
- The `filter_too_much` health check is off: the body schemas tie addresses to `channel` with
  `if`/`then`, and hypothesis gives up on POST /notifications otherwise (nothing is fuzzed).
- Webhook URLs that match the documented pattern are pointed at 127.0.0.1 before they are sent
  (`webhook_urls_resolve`): whether a host resolves is DNS's answer at request time, which no
  schema can state; the server allows private addresses (NOTIFQ_WEBHOOKS_ALLOW_PRIVATE=1).
- The server caps campaigns at 1,000 recipients (NOTIFQ_MAX_CAMPAIGN_SIZE) so that a
  generated campaign takes milliseconds; the document is expected to state the running
  server's limits.

On failure the assertion lists each failure (operation, check, reproduction); the full output,
the JUnit report and the server log are kept under the test's tmp_path.
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
import re
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from notifq.api.models.webhooks import URL_PATTERN
from notifq.settings import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.harness import api_process

ST = Path(sys.executable).with_name("st")
MAX_CAMPAIGN_SIZE = 100_000
RUN_TIMEOUT_SECONDS = 240
EXAMPLES_PER_OPERATION = 40
# Operations schemathesis must not call: they would end the run or the token it runs with.
TOKEN_REVOKING = {("POST", "/auth/logout")}
# Not HTTP operations: GET /ws only upgrades to a WebSocket (a plain GET is its documented 426);
# the protocol is tested with a real WebSocket client in tests/subscribers.
WEBSOCKETS = {("GET", "/ws")}


def unique_idempotency_keys(context: Any, case: Any, kwargs: Any) -> None:
    """A schemathesis `before_call` hook: every generated request gets an Idempotency-Key of its own.

    Schemathesis draws header values from a small pool, so two different bodies often share a
    key; the API then answers 422 `key_reused`, as documented, which schemathesis would report as
    a valid request refused. A valid key stays valid (printable ASCII, at most 255 characters)
    and an invalid one is left alone, so negative cases keep their meaning. It runs inside the
    `st` process, written out with its source (`_hooks_file`): it may use only `uuid`.
    """
    headers = case.headers  # a case-insensitive mapping, or None
    key = headers.get("Idempotency-Key") if headers is not None else None
    if isinstance(key, str) and 1 <= len(key) <= 255 and key.isascii() and key.isprintable():
        headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"


def within_a_year(context: Any, body: Any) -> bool:
    """A schemathesis `filter_body` hook: no `sendAt` more than a year ahead, no `expiresAt` in the past.

    "At most a year ahead" and "in the future" depend on today, so no static schema can state
    them (the document says them in words, and the API answers 422): without this filter a
    fuzzed date in 6971 (or an API key expiring in 1970) reads as a valid request refused.
    Everything else about these fields is still generated: past schedules, zones, the year
    limit itself, far-future expiries. It may use only `datetime`.
    """
    items = body if isinstance(body, list) else [body]
    now = datetime.datetime.now(datetime.UTC)
    limit = now + datetime.timedelta(days=360)
    for item in items:
        when = item.get("sendAt") if isinstance(item, dict) else None
        expires = item.get("expiresAt") if isinstance(item, dict) else None
        try:
            if isinstance(when, str) and datetime.datetime.fromisoformat(when) > limit:
                return False
            if isinstance(expires, str) and datetime.datetime.fromisoformat(expires) <= now + datetime.timedelta(
                    seconds=60):  # fmt: skip
                return False
        except (ValueError, TypeError, OverflowError):
            pass
    return True


WEBHOOK_URL_PATTERN = URL_PATTERN  # what the document says a webhook URL looks like
RESOLVABLE_WEBHOOK_URL = "http://127.0.0.1:9/st-webhook"  # nothing listens: a test POST fails fast, answered 200


def webhook_urls_resolve(context: Any, case: Any, kwargs: Any) -> None:
    """A schemathesis `before_call` hook: a well-formed webhook `url` in a generated body becomes one that resolves.

    Whether a host resolves (and to which addresses) is a fact of DNS at request time, which no schema can
    state (the document says it in words, and the API answers 422): a generated `https://x.yz/` would read
    as a valid request refused. A URL matching the documented pattern is replaced by another that matches
    it (127.0.0.1, which the server under test allows: NOTIFQ_WEBHOOKS_ALLOW_PRIVATE=1), so a valid body
    stays valid and an invalid one invalid. It may use only `re` and the two constants written beside it.
    """
    body = case.body
    if not case.operation.path.startswith("/webhooks") or not isinstance(body, dict):
        return
    url = body.get("url")
    if isinstance(url, str) and len(url) <= 2048 and re.match(WEBHOOK_URL_PATTERN, url):
        body["url"] = RESOLVABLE_WEBHOOK_URL


def _hooks_file(directory: Path) -> Path:
    path = directory / "st_hooks.py"
    sources = "\n\n".join(inspect.getsource(f) for f in (unique_idempotency_keys, within_a_year, webhook_urls_resolve))
    register = ('schemathesis.hook("before_call")(unique_idempotency_keys)\n'
                'schemathesis.hook("filter_body")(within_a_year)\n'
                'schemathesis.hook("before_call")(webhook_urls_resolve)')  # fmt: skip
    constants = f"WEBHOOK_URL_PATTERN = {WEBHOOK_URL_PATTERN!r}\nRESOLVABLE_WEBHOOK_URL = {RESOLVABLE_WEBHOOK_URL!r}\n"
    path.write_text(
        "from __future__ import annotations\n\nimport datetime\nimport re\nimport uuid\n\nimport schemathesis\n\n"
        f"{constants}\n\n{sources}\n\n{register}\n"
    )
    return path


@pytest.fixture
def api_url(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`notifq api` in its own process (uvloop, httptools: as deployed), stopped with SIGTERM."""
    # Private webhook URLs allowed: generated bodies name 127.0.0.1 (`webhook_urls_resolve`).
    served = settings.with_(max_campaign_size=MAX_CAMPAIGN_SIZE, webhooks_allow_private=True, webhook_timeout=2.0)
    with api_process(served, tmp_path / "api.log") as url:
        yield url


def _bearer_schemes(spec: dict[str, Any]) -> list[str]:
    schemes = spec.get("components", {}).get("securitySchemes", {})
    return [name for name, s in schemes.items() if s.get("type") == "http" and s.get("scheme", "").lower() == "bearer"]


def _excluded_paths(spec: dict[str, Any]) -> list[str]:
    """Paths of the streaming operations and of the token-revoking ones."""
    excluded = set()
    for path, item in spec.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            media = {m for r in operation["responses"].values() if isinstance(r, dict) for m in r.get("content", {})}
            if "text/event-stream" in media or (method.upper(), path) in TOKEN_REVOKING | WEBSOCKETS:
                excluded.add(path)
    return sorted(excluded)


# Each bearer scheme's token, from the environment of the `st` process: the inbox operations take a
# subscriber's token (`subscriberAuth`), everything else an admin's.
SCHEME_TOKENS = {"subscriberAuth": "NOTIFQ_ST_SUBSCRIBER_TOKEN"}


def _config(schemes: list[str], hooks: Path) -> str:
    auth = "".join(f'[auth.openapi."{name}"]\nbearer = "${{{SCHEME_TOKENS.get(name, "NOTIFQ_ST_TOKEN")}}}"\n'
                   for name in schemes)  # fmt: skip
    return f"""\
hooks = {json.dumps(str(hooks))}
continue-on-failure = true
workers = 1
request-timeout = 30
suppress-health-check = ["filter_too_much"]
{auth}
[generation]
mode = "all"
deterministic = true
max-examples = {EXAMPLES_PER_OPERATION}

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx"]

[phases.stateful]
max-steps = 6

[phases.stateful.generation]
max-examples = 15

[phases.stateful.inference]
algorithms = ["location-headers"]
"""


def _failures(junit: Path) -> list[str]:
    """One entry per distinct failure (check, title, status), with the operations it hit and a reproduction."""
    seen: dict[str, tuple[list[str], str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        for failure in [*case.iter("failure"), *case.iter("error")]:
            for block in re.split(r"\n(?=\d+\. Test Case ID)", failure.text or ""):
                title = re.search(r"^- (ST\d+ .+)$|^(Failed Health Check.*)$", block, re.M)
                curl = re.search(r"^\s+(curl .+)$", block, re.M)
                got = re.search(r"^\[(\d{3})\]", block, re.M)
                head = (title.group(1) or title.group(2)) if title else block.strip().splitlines()[0][:200]
                said = re.search(r'"message":"((?:[^"\\]|\\.)*)"', block)  # the API's own error message
                why = re.search(r"^\s+(Invalid component: .+|Got .+|TRACE .+)$", block, re.M)
                key = head + (f" -> {got.group(1)}" if got else "") + (f" {said.group(1)!r}" if said else "")
                key += f" ({why.group(1)[:200]})" if why else ""
                seen.setdefault(key, ([], curl.group(1)[:600] if curl else ""))[0].append(str(case.get("name")))
    return [
        f"{key} on {len(ops)} operation(s): {', '.join(ops)}" + (f"\n    e.g. {example}" if example else "")
        for key, (ops, example) in seen.items()
    ]


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 60)
def test_api_honours_its_openapi_contract(api_url: str, admin_id: Any, tmp_path: Path) -> None:
    """Every operation's answers match /openapi.json, and its inputs are accepted or refused as it says."""
    login = httpx.post(f"{api_url}/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=30)
    assert login.status_code == 200, login.text
    spec = httpx.get(f"{api_url}/openapi.json", timeout=10).json()
    schemes = _bearer_schemes(spec)
    assert schemes, "the document declares no HTTP bearer security scheme"
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(schemes, _hooks_file(tmp_path)))
    excluded = _excluded_paths(spec)
    reports = tmp_path / "reports"
    args = [str(ST), "--config-file", str(config), "run", f"{api_url}/openapi.json", "--checks", "all",
            "--no-color", "--report", "junit,json", "--report-dir", str(reports)]  # fmt: skip
    if excluded:
        args += ["--exclude-path-regex", "^(?:" + "|".join(re.escape(p) for p in excluded) + ")$"]
    admin = {"Authorization": f"Bearer {login.json()['token']}"}
    assert httpx.put(f"{api_url}/subscribers/st-reader", json={}, headers=admin, timeout=30).status_code == 201
    minted = httpx.post(f"{api_url}/subscribers/st-reader/token", headers=admin, timeout=30)
    assert minted.status_code == 201, minted.text
    env = {**os.environ, "NOTIFQ_ST_TOKEN": login.json()["token"], "NOTIFQ_ST_SUBSCRIBER_TOKEN": minted.json()["token"]}
    started = time.monotonic()
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS)
    elapsed = time.monotonic() - started
    (tmp_path / "st-output.txt").write_text(done.stdout + done.stderr)
    junits = sorted(reports.glob("junit*.xml"))
    assert junits, f"schemathesis wrote no report (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr}"
    failures = _failures(junits[-1])
    summary = done.stdout[done.stdout.rfind("=== SUMMARY") :][:3000]
    assert done.returncode == 0 and not failures, (
        f"schemathesis exit {done.returncode} after {elapsed:.0f} s, {len(failures)} failure(s) "
        f"(full output: {tmp_path / 'st-output.txt'}):\n" + "\n".join(failures) + f"\n\n{summary}"
    )
