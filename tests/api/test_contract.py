"""The route table is the contract: every served route is described, every description is served,
and what the API answers matches the served schema (schemathesis checks the rest, see test_schemathesis.py)."""

from __future__ import annotations

import inspect
from typing import Any

import httpx
import jsonschema
import pydantic
import pytest
from starlette.routing import Mount, Route, WebSocketRoute

from notifq.api.app import create_app
from notifq.api.contract import Operation
from notifq.api.openapi import documented_path
from notifq.api.routes import OPERATIONS
from notifq.settings import Settings
from tests.api.support import assert_error


def _app_routes(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(settings)
    served: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path == "/assets", "only the dashboard's static files may be served outside the table"
            continue
        if isinstance(route, WebSocketRoute):  # documented as its plain GET (which answers 426)
            served.add((route.path, "get"))
            continue
        assert isinstance(route, Route)
        served |= {(documented_path(route.path), m.lower()) for m in route.methods or () if m != "HEAD"}
    return served


def test_every_served_route_is_an_operation_and_every_operation_is_served(settings: Settings) -> None:
    spec = create_app(settings).state.openapi
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert _app_routes(settings) == documented == {(documented_path(op.path), op.method.lower()) for op in OPERATIONS}


@pytest.mark.parametrize("op", OPERATIONS, ids=[o.operation_id for o in OPERATIONS])
def test_every_operation_declares_its_bodies(op: Operation) -> None:
    """A JSON answer has a model; a handler that reads a body declares that body's model."""
    for status, reply in op.replies.items():
        if reply.media_type == "application/json" and status < 300 and status != 204:
            assert reply.model is not None and reply.model != "Error", (op.operation_id, status)
    source = inspect.getsource(op.handler)
    if "read_body(" in source or "read_json(" in source:
        assert op.body is not None, f"{op.operation_id} reads a body but declares no model"
    if "parse_query(" in source:
        assert op.query is not None, f"{op.operation_id} reads a query string but declares no model"
    assert not op.public or "require_admin(" not in source, f"{op.operation_id} is public but checks a token"


def test_operation_ids_are_unique() -> None:
    ids = [op.operation_id for op in OPERATIONS]
    assert len(ids) == len(set(ids))


def test_the_document_is_valid_openapi_3_1(settings: Settings) -> None:
    from jsonschema.validators import Draft202012Validator

    spec = create_app(settings).state.openapi
    for name, schema in spec["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)  # each component is a valid JSON Schema
        assert "title" not in schema or isinstance(schema["title"], str), name
    assert spec["openapi"] == "3.1.0"


def test_limits_that_are_settings_are_served(settings: Settings) -> None:
    spec = create_app(settings.with_(max_campaign_size=1234)).state.openapi
    create = spec["components"]["schemas"]["CampaignCreate"]["properties"]
    assert create["recipients"]["maxItems"] == 1234
    assert create["recipientCount"]["maximum"] == 1234


def _validator(spec: dict[str, Any], path: str, method: str, status: int) -> jsonschema.Draft202012Validator:
    schema = spec["paths"][path][method]["responses"][str(status)]
    schema = schema["content"]["application/json"]["schema"]
    return jsonschema.Draft202012Validator({**schema, "components": spec["components"]})


async def test_real_answers_match_the_served_schema(client: httpx.AsyncClient, fast_auth: dict[str, str]) -> None:
    """A campaign, a notification with its trail, pages and stats, each checked against the document."""
    spec = (await client.get("/openapi.json")).json()
    r = await client.post("/campaigns", json={"name": "c", "recipients": ["a@example.com", {"to": "b@example.com",
                          "vars": {"n": 1}}]}, headers=fast_auth)  # fmt: skip
    assert r.status_code == 202, r.text
    _validator(spec, "/campaigns", "post", 202).validate(r.json())
    cid = r.json()["id"]
    checks = [
        ("/campaigns/{campaign_id}", f"/campaigns/{cid}"),
        ("/campaigns", "/campaigns"),
        ("/campaigns/{campaign_id}/messages", f"/campaigns/{cid}/messages"),
        ("/campaigns/{campaign_id}/timeline", f"/campaigns/{cid}/timeline"),
        ("/stats", "/stats"),
        ("/workers", "/workers"),
        ("/notifications", "/notifications"),
        ("/dead-letters", "/dead-letters"),
        ("/health", "/health"),
        ("/ready", "/ready"),
    ]
    r = await client.post("/notifications", json={"channel": "sms", "to": "+15550001234", "body": "hi",
                                                  "data": {"k": 1}}, headers=fast_auth)  # fmt: skip
    assert r.status_code == 202, r.text
    _validator(spec, "/notifications", "post", 202).validate(r.json())
    checks.append(("/notifications/{notification_id}", f"/notifications/{r.json()['id']}"))
    for template, path in checks:
        answer = await client.get(path, headers=fast_auth)
        assert answer.status_code == 200, (path, answer.text)
        _validator(spec, template, "get", 200).validate(answer.json())
    batch = await client.post("/notifications", json=[{"to": "x@example.com", "body": "b"}], headers=fast_auth)
    assert batch.status_code == 202
    _validator(spec, "/notifications", "post", 202).validate(batch.json())
    error = await client.get("/campaigns?limit=0", headers=fast_auth)
    assert_error(error, 422, "validation_error")
    jsonschema.validate(error.json(), {**spec["components"]["schemas"]["Error"], "components": spec["components"]})


def test_pydantic_errors_become_the_envelope_without_echoing_input() -> None:
    from notifq.api.contract import translate
    from notifq.api.models.notifications import NotificationCreate

    try:
        NotificationCreate.model_validate_json(b'{"to": "x@example.com", "body": 5}')
    except pydantic.ValidationError as exc:
        error = translate(exc)
    assert error.details == {"field": "body"} and "must be a string" in error.message
    try:
        NotificationCreate.model_validate_json(b'{"to": "x@example.com", "body": "ok", "subject": "a\\u0000"}')
    except pydantic.ValidationError as exc:
        error = translate(exc)
    assert error.details == {"field": "subject"} and "NUL" in error.message
