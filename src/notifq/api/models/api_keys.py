"""Bodies of the API key endpoints: POST /api-keys, a key as listed (never its secret), the one answer with it."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from notifq.api.contract import invalid
from notifq.api.models.base import ApiModel, Timestamp
from notifq.api.models.campaigns import NAME_PATTERN, Name
from notifq.api.models.notifications import Instant
from notifq.api_keys import MAX_NAME
from notifq.db.api_keys_repo import ApiKeyRow
from notifq.vocabulary import SCOPE_DESCRIPTIONS, Scope

SCOPES_DOC = "; ".join(f"`{s}`: {SCOPE_DESCRIPTIONS[s]}" for s in Scope)


def _distinct(value: list[Scope]) -> list[Scope]:
    if len(set(value)) != len(value):
        raise invalid("`{field}` names a scope twice", {"field": ""})
    return value


def _text(value: object) -> object:
    if not isinstance(value, str):
        raise invalid("`{field}` must be a string: an ISO 8601 date-time with a zone", {"field": ""})
    return value


# A date-time given as text only (the field is parsed leniently, so a number would otherwise pass as epoch seconds).
ExpiresAt = Annotated[Instant, BeforeValidator(_text)]
Scopes = Annotated[list[Scope], Field(min_length=1, max_length=len(Scope), json_schema_extra={"uniqueItems": True},
                                      description="What the key may do (each scope once): " + SCOPES_DOC + "."),
                   AfterValidator(_distinct)]  # fmt: skip


class ApiKeyCreate(ApiModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "Order service", "scopes": ["notifications:send"], "expiresAt": "2027-06-30T00:00:00Z"}]})  # fmt: skip
    name: Name = Field(
        min_length=1,
        max_length=MAX_NAME,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="What uses the key, for operators (one line, not blank).",
    )
    scopes: Scopes
    # Not strict: `Instant` checks the text itself (a zone required), then lets pydantic parse it.
    expires_at: ExpiresAt | None = Field(None, strict=False, description="When it stops working (in the future; "
                                         "null or absent: never, unless an API key creates it: then at most that "
                                         "key's expiry, which is also the default).")  # fmt: skip


class ApiKey(ApiModel):
    model_config = ConfigDict(strict=False)
    id: uuid.UUID
    name: str
    scopes: list[Scope]
    prefix: str = Field(description="`nq_` and the secret's first 6 characters, to recognise a key by.")
    created_by_key: uuid.UUID | None = Field(description="The API key that created it (revoking that one revokes "
                                             "this one too); null when an admin did.")  # fmt: skip
    created_at: Timestamp
    expires_at: Timestamp | None
    last_used_at: Timestamp | None = Field(description="When it last authenticated a request, to within about a "
                                           "minute (null: never).")  # fmt: skip
    revoked_at: Timestamp | None

    @classmethod
    def of(cls, k: ApiKeyRow) -> ApiKey:
        return cls(id=k.id, name=k.name, scopes=[Scope(s) for s in k.scopes], prefix=k.prefix,
                   created_by_key=k.created_by_key, created_at=k.created_at, expires_at=k.expires_at,
                   last_used_at=k.last_used_at, revoked_at=k.revoked_at)  # fmt: skip


class ApiKeyCreated(ApiKey):
    secret: str = Field(description="The key (`nq_…`): shown in this answer only, never again (notifq keeps its "
                        "SHA-256). Send it as `Authorization: Bearer <secret>`.")  # fmt: skip

    @classmethod
    def created(cls, k: ApiKeyRow, secret: str) -> ApiKeyCreated:
        return cls(**ApiKey.of(k).model_dump(), secret=secret)


class ApiKeyList(ApiModel):
    """Every key, revoked ones included (with `revokedAt`), newest first."""

    items: list[ApiKey]
