"""A local stand-in for FCM HTTP v1 and Google's OAuth2 token endpoint (http.server in a thread).

It checks requests the way the real services document them: the token endpoint verifies
the service account's signed JWT (RS256 with the account's public key, iss, aud, scope,
iat/exp, kid); messages:send checks the bearer token it issued, the project in the path
and the JSON shape (one target, notification fields, data values that are strings).
Tests can script error answers and revoke the tokens it issued.

Fixtures (register this module as a pytest plugin to use them elsewhere):
- `fcm_server`: a running FakeFcmServer; `fcm_server.url` is the FCM endpoint and
  `fcm_server.credentials_file` a matching service-account JSON whose token_uri points here.
- `fcm_private_key`: the session's RSA test key.
Device tokens starting with "unregistered-" are answered 404 UNREGISTERED, as FCM does
for uninstalled apps.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PROJECT_ID = "notifq-test"
CLIENT_EMAIL = "notifq-push@notifq-test.iam.gserviceaccount.com"
KEY_ID = "0123456789abcdef0123456789abcdef01234567"
MESSAGE_FIELDS = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", "token", "topic",
                  "condition"}  # fmt: skip
NOTIFICATION_FIELDS = {"title", "body", "image"}
RESERVED_DATA_KEYS = {"from", "notification", "message_type"}
_SEND_PATH = re.compile(r"/v1/projects/([^/]+)/messages:send")


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


def google_error(status: int, canonical: str, message: str, fcm_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": canonical}
    if fcm_code:
        error["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}]
    return {"error": error}


class FakeFcmServer:
    def __init__(self, private_key: rsa.RSAPrivateKey, credentials_file: Path, token_lifetime: int = 3600) -> None:
        self.public_key = private_key.public_key()
        self.token_lifetime = token_lifetime
        self.lock = threading.Lock()
        self.issued: dict[str, float] = {}  # access token -> expiry (time.time())
        self.token_requests = 0
        self.assertions: list[dict[str, Any]] = []  # verified JWT claims, in order
        self.sent: list[dict[str, Any]] = []  # accepted messages:send bodies with their path project
        self.requests = 0  # messages:send requests, answered or not
        self.refuse_tokens = False  # answer every send 401, even with a fresh token
        self._script: list[Reply] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.token_uri = f"{self.url}/token"
        self.credentials_file = credentials_file
        write_service_account(credentials_file, private_key, self.token_uri)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    # --- test controls ---------------------------------------------------------------------

    def fail_next(self, status: int, canonical: str, fcm_code: str | None = None, *, retry_after: str | None = None,
                  times: int = 1) -> None:  # fmt: skip
        """Answer the next `times` messages:send requests (authenticated ones) with this error."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        reply = Reply(status, google_error(status, canonical, f"scripted {canonical}", fcm_code), headers)
        with self.lock:
            self._script.extend([reply] * times)

    def revoke_tokens(self) -> None:
        """Every access token issued so far is now refused with 401, as after a key rotation."""
        with self.lock:
            self.issued.clear()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    # --- endpoints ---------------------------------------------------------------------------

    def token(self, content_type: str, raw: bytes) -> Reply:
        with self.lock:
            self.token_requests += 1
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return _oauth_error("invalid_request", "expected a form body")
        form = {k: v[0] for k, v in parse_qs(raw.decode(), strict_parsing=True).items()}
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error("unsupported_grant_type", f"grant_type {form.get('grant_type')!r}")
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(
                assertion, self.public_key, algorithms=["RS256"], audience=self.token_uri, issuer=CLIENT_EMAIL,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )  # fmt: skip
        except jwt.PyJWTError as exc:
            return _oauth_error("invalid_grant", f"bad assertion: {exc}")
        if header.get("kid") != KEY_ID:
            return _oauth_error("invalid_grant", "unknown key id")
        if claims["scope"] != FCM_SCOPE:
            return _oauth_error("invalid_scope", f"scope {claims['scope']!r}")
        if not 0 < claims["exp"] - claims["iat"] <= 3600 or abs(claims["iat"] - time.time()) > 300:
            return _oauth_error("invalid_grant", "iat/exp out of range")
        token = f"ya29.test-{secrets.token_urlsafe(24)}"
        with self.lock:
            self.issued[token] = time.time() + self.token_lifetime
            self.assertions.append(claims)
        return Reply(200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}, {})

    def send(self, project: str, authorization: str, content_type: str, raw: bytes) -> Reply:
        with self.lock:
            self.requests += 1
            token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else ""
            valid = self.issued.get(token, 0) > time.time() and not self.refuse_tokens
        if not valid:
            return Reply(401, google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
                         {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'})  # fmt: skip
        if project != PROJECT_ID:
            return Reply(403, google_error(403, "PERMISSION_DENIED", f"no access to project {project}"), {})
        with self.lock:
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            return scripted
        if not content_type.startswith("application/json"):
            return _invalid("expected application/json")
        try:
            body = json.loads(raw)
        except ValueError:
            return _invalid("body is not JSON")
        problem = check_send_body(body)
        if problem:
            return _invalid(problem)
        if body["message"]["token"].startswith("unregistered-"):
            return Reply(404, google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"), {})
        with self.lock:
            self.sent.append({"project": project, **body})
            name = f"projects/{project}/messages/{len(self.sent)}:{secrets.token_hex(4)}"
        return Reply(200, {"name": name}, {})


def check_send_body(body: Any) -> str | None:
    """What FCM's v1 API would reject in a request body, or None."""
    if not isinstance(body, dict) or not set(body) <= {"message", "validate_only"} or "message" not in body:
        return 'the body must be {"message": {...}}'
    message = body["message"]
    if not isinstance(message, dict) or not set(message) <= MESSAGE_FIELDS:
        return f"unknown message fields: {sorted(set(message) - MESSAGE_FIELDS) if isinstance(message, dict) else ''}"
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if targets != ["token"] or not isinstance(message["token"], str) or not message["token"]:
        return "exactly one target, a non-empty token, is expected"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or not set(notification) <= NOTIFICATION_FIELDS:
        return "notification may hold only title, body and image"
    if not all(isinstance(v, str) for v in notification.values()):
        return "notification fields must be strings"
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return "data must map strings to strings"
    reserved = [k for k in data if k in RESERVED_DATA_KEYS or k.startswith(("google", "gcm"))]
    if reserved:
        return f"reserved data keys: {reserved}"
    return None


def _invalid(message: str) -> Reply:
    return Reply(400, google_error(400, "INVALID_ARGUMENT", message, "INVALID_ARGUMENT"), {})


def _oauth_error(error: str, description: str) -> Reply:
    return Reply(400, {"error": error, "error_description": description}, {})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as with Google's endpoints
    timeout = 5  # idle keep-alive connections are dropped

    def do_POST(self) -> None:
        fake: FakeFcmServer = self.server.fake  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type", "")
        match = _SEND_PATH.fullmatch(self.path)
        if self.path == "/token":
            reply = fake.token(content_type, raw)
        elif match:
            reply = fake.send(match.group(1), self.headers.get("Authorization", ""), content_type, raw)
        else:
            reply = Reply(404, google_error(404, "NOT_FOUND", f"no route {self.path}"), {})
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return


def write_service_account(
    path: Path, private_key: rsa.RSAPrivateKey, token_uri: str, project_id: str = PROJECT_ID
) -> Path:
    """A service-account JSON shaped like the ones the Firebase console downloads."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account", "project_id": project_id, "private_key_id": KEY_ID, "private_key": pem,
        "client_email": CLIENT_EMAIL, "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/notifq-push",
        "universe_domain": "googleapis.com",
    }  # fmt: skip
    path.write_text(json.dumps(info, indent=2))
    return path


@pytest.fixture(scope="session")
def fcm_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fcm_server(fcm_private_key: rsa.RSAPrivateKey, tmp_path: Path) -> Iterator[FakeFcmServer]:
    server = FakeFcmServer(fcm_private_key, tmp_path / "fcm-service-account.json")
    try:
        yield server
    finally:
        server.stop()
