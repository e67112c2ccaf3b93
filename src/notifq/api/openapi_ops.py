"""OpenAPI paths and schemas of the operations view: workers, metrics, live streams, the dashboard.

Kept beside openapi.py (which merges them in) so neither module grows past reading size.
"""

from __future__ import annotations

from typing import Any, Final

from notifq.api.openapi_parts import BEARER, PUBLIC, ref
from notifq.api.stream_routes import DETAIL_INTERVAL_SECONDS, KEEPALIVE_SECONDS, LIST_INTERVAL_SECONDS, LIST_SIZE
from notifq.telemetry import HEARTBEAT_SECONDS, LIVENESS_SECONDS


def _count(description: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 0, "description": description}


def _event_stream(event: str, payload: str, interval: float) -> dict[str, Any]:
    return {
        "description": (
            f"`text/event-stream`: an `event: {event}` whose `data:` line is {payload}, sent on connect and "
            f"whenever it changes (checked every {interval:g} s), plus a `: keepalive` comment every "
            f"{KEEPALIVE_SECONDS:g} s. Browsers read it with fetch() so the bearer token stays in a header."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }


OPS_SCHEMAS: Final[dict[str, Any]] = {
    "Worker": {
        "type": "object",
        "required": [
            "id",
            "host",
            "pid",
            "startedAt",
            "lastSeen",
            "ratePerSecond",
            "inFlight",
            "sent",
            "failed",
            "retried",
        ],
        "properties": {
            "id": {"type": "string", "description": "host-pid-random: unique per worker process start."},
            "host": {"type": "string"},
            "pid": {"type": "integer"},
            "startedAt": {"type": "string", "format": "date-time"},
            "lastSeen": {"type": "string", "format": "date-time", "description": "Its latest heartbeat."},
            "ratePerSecond": {"type": "number", "minimum": 0, "description": "Messages finished/s, last 5 s."},
            "inFlight": _count("Provider calls in progress."),
            "sent": _count("Messages sent since it started."),
            "failed": _count("Messages failed permanently since it started."),
            "retried": _count("Attempts that will be retried, since it started."),
        },
    },
    "Workers": {
        "type": "object",
        "required": ["workers", "queue", "inFlight"],
        "properties": {
            "workers": {"type": "array", "items": ref("schemas", "Worker")},
            "queue": {
                "type": "object",
                "required": [
                    "bulkJobs",
                    "transactionalJobs",
                    "queuedMessages",
                    "sendingMessages",
                    "scheduledMessages",
                ],
                "properties": {
                    "bulkJobs": _count("Batches waiting in the bulk lane's Redis queue."),
                    "transactionalJobs": _count("Batches waiting in the transactional lane."),
                    "queuedMessages": _count("Messages waiting for a worker."),
                    "sendingMessages": _count("Messages claimed by a worker right now."),
                    "scheduledMessages": _count("Messages held for a later sendAt or a paused campaign."),
                },
            },
            "inFlight": _count("Provider calls in progress across live workers."),
        },
    },
    "Timeline": {
        "type": "object",
        "required": ["bucketSeconds", "points"],
        "properties": {
            "bucketSeconds": {
                "type": "integer",
                "minimum": 1,
                "description": "Width of each bucket (≥ 1 s; "
                "wider for long campaigns so there are at most about 300 buckets).",
            },
            "points": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["at", "sent", "failed"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time", "description": "Start of the bucket."},
                        "sent": _count("Messages sent in the bucket."),
                        "failed": _count("Messages that failed for good in the bucket."),
                    },
                },
            },
        },
    },
}

_UNAUTHORIZED = {"401": ref("responses", "Unauthorized")}
_UNAVAILABLE = {"503": ref("responses", "ServiceUnavailable")}

OPS_PATHS: Final[dict[str, Any]] = {
    "/workers": {
        "get": {
            "operationId": "listWorkers",
            "tags": ["operations"],
            "summary": "Live workers and queue depth",
            "description": (
                f"Every worker heartbeats every {HEARTBEAT_SECONDS:g} s; one silent for {LIVENESS_SECONDS:g} s is "
                "left out (a gracefully stopped one leaves at once)."
            ),
            "responses": {
                "200": {
                    "description": "The live workers.",
                    "content": {"application/json": {"schema": ref("schemas", "Workers")}},
                },
                **_UNAUTHORIZED,
                **_UNAVAILABLE,
            },
        },
    },
    "/metrics": {
        "get": {
            "operationId": "getMetrics",
            "tags": ["operations"],
            "summary": "Prometheus metrics for the whole cluster",
            "security": PUBLIC,
            "description": (
                "Prometheus text format. Counters `notifq_messages_{sent,failed,retried,throttled,deferred}_total` "
                "and the histogram `notifq_provider_latency_seconds` by channel and provider (published by every "
                "worker through Redis); gauges `notifq_messages{channel,status}`, `notifq_queue_depth`, "
                "`notifq_queue_jobs{lane}`, `notifq_in_flight`, `notifq_workers`; counters "
                "`notifq_rate_limit_waits_total` and `notifq_rate_limit_wait_seconds_total`. Aggregates only "
                "(no ids, addresses or secrets); expose it to your scraper's network only."
            ),
            "responses": {
                "200": {"description": "The metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}},
                **_UNAVAILABLE,
            },
        },
    },
    "/events/campaigns": {
        "get": {
            "operationId": "streamCampaigns",
            "tags": ["campaigns"],
            "summary": "Live progress of the newest campaigns (server-sent events)",
            "responses": {
                "200": _event_stream(
                    "campaigns", f'`{{"items": [Campaign, …]}}` (the newest {LIST_SIZE})', LIST_INTERVAL_SECONDS
                ),
                **_UNAUTHORIZED,
                **_UNAVAILABLE,
            },
        },
    },
    "/events/campaigns/{campaign_id}": {
        "parameters": [ref("parameters", "CampaignId")],
        "get": {
            "operationId": "streamCampaign",
            "tags": ["campaigns"],
            "summary": "Live progress of one campaign (server-sent events)",
            "responses": {
                "200": _event_stream("campaign", "the Campaign (as GET /campaigns/{id})", DETAIL_INTERVAL_SECONDS),
                "404": ref("responses", "NotFound"),
                "422": ref("responses", "ValidationFailed"),
                **_UNAUTHORIZED,
                **_UNAVAILABLE,
            },
        },
    },
    "/campaigns/{campaign_id}/timeline": {
        "parameters": [ref("parameters", "CampaignId")],
        "get": {
            "operationId": "getCampaignTimeline",
            "tags": ["campaigns"],
            "summary": "Messages finished per second (or wider buckets), for the progress chart",
            "security": BEARER,
            "responses": {
                "200": {
                    "description": "The timeline.",
                    "content": {"application/json": {"schema": ref("schemas", "Timeline")}},
                },
                "404": ref("responses", "NotFound"),
                "422": ref("responses", "ValidationFailed"),
                **_UNAUTHORIZED,
                **_UNAVAILABLE,
            },
        },
    },
    "/": {
        "get": {
            "operationId": "dashboard",
            "tags": ["operations"],
            "summary": "The web dashboard (HTML; its scripts and styles are under /assets/)",
            "security": PUBLIC,
            "responses": {
                "200": {"description": "The dashboard page.", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        },
    },
}
