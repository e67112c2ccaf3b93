#!/usr/bin/env python3
"""CPU per `POST /notifications` inside one process: the app and an in-process ASGI client.

    PYTHONPATH=<tree>/src .venv/bin/python scripts/api_cpu_probe.py DATABASE_URL REDIS_URL [N]

`make bench` measures the API as a separate process under load, which is the real figure
but varies ±15 % run to run on this machine. This probe has far less noise (no scheduler,
no network), so two trees (e.g. a `git worktree` of an older commit) can be compared by
running it alternately against the same, migrated database. The client's own cost is
included, and identical for both trees, so differences are the API's.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx

from notifq.admins import set_admin
from notifq.api.app import create_app
from notifq.db.engine import create_engine
from notifq.settings import Settings

EMAIL, PASSWORD = "probe@notifq.dev", "correct horse battery staple"
BODY = {"channel": "sms", "to": "+15550001234", "body": "Your code is 123456"}
ROUNDS, WARMUP = 5, 200


async def main(database_url: str, redis_url: str, n: int) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url, jwt_secret="t" * 48, rate_limit=0)
    engine = create_engine(database_url, pool_size=2)
    await set_admin(engine, EMAIL, PASSWORD)
    await engine.dispose()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
            login = await client.post("/auth/login", json={"email": EMAIL, "password": PASSWORD})
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            for _ in range(WARMUP):
                assert (await client.post("/notifications", json=BODY, headers=headers)).status_code == 202
            rounds = []
            for _ in range(ROUNDS):
                started = time.process_time()
                for _ in range(n):
                    await client.post("/notifications", json=BODY, headers=headers)
                rounds.append((time.process_time() - started) / n * 1000)
    rounds.sort()
    print(f"CPU ms per send: best {rounds[0]:.3f}, median {rounds[len(rounds) // 2]:.3f} ({ROUNDS} rounds of {n})")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1000))
