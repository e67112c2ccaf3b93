"""Running a create handler under an optional `Idempotency-Key`."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from notifq import idempotency
from notifq.idempotency import Replay, Ticket


async def run(
    request: Request,
    admin_id: uuid.UUID,
    body: bytes,
    create: Callable[[Ticket | None], Awaitable[Response]],
    replay: Callable[[Replay], Awaitable[Response]],
) -> Response:
    raw_key = request.headers.get("idempotency-key")
    if raw_key is None:
        return await create(None)
    key = idempotency.check_key(raw_key)
    engine = request.app.state.engine
    digest = idempotency.request_hash(request.method, request.url.path, body)
    # A new key is claimed with the other keyed requests of the moment (the hot path of a keyed send).
    claimed = await idempotency.begin(engine, admin_id, key, digest, claims=request.app.state.notifications.key_claims)
    if isinstance(claimed, Replay):
        response = await replay(claimed)
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        return await create(claimed)
    except BaseException:
        await idempotency.abandon(engine, claimed)
        raise
