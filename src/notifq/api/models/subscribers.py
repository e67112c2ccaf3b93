"""Subscribers, their preferences and inbox tokens; the in-app inbox as a subscriber sees it."""

from __future__ import annotations

import functools
import json
import zoneinfo
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from notifq.addresses import CATEGORY_RE, E164_RE, EMAIL_RE, MAX_CATEGORIES, PUSH_TOKEN_RE, SUBSCRIBER_ID_RE
from notifq.api.contract import invalid
from notifq.api.models.base import NO_NUL, ApiModel, Limit, Page, limit_field
from notifq.db.inbox_repo import InboxItem
from notifq.db.subscribers_repo import Profile, SubscriberRow
from notifq.errors import ValidationError
from notifq.vocabulary import Channel

MAX_PUSH_TOKENS = 10
MAX_SUBSCRIBER_DATA_BYTES = 16 * 1024
MAX_SUBSCRIBER_DATA_DEPTH = 5  # objects and arrays nested in one another, `data` itself included
SUBSCRIBER_ID_PATTERN = f"^{SUBSCRIBER_ID_RE.pattern}$"  # not `.` or `..`: see addresses.SUBSCRIBER_ID_RE
CATEGORY_PATTERN = f"^{CATEGORY_RE.pattern}$"
LOCALE_PATTERN = r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8}){0,4}$"
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"


def subscriber_id(raw: str) -> str:
    """A path's subscriber id: 1-128 of `[A-Za-z0-9._:@-]`, not `.` or `..` (the caller's own user id)."""
    if not SUBSCRIBER_ID_RE.fullmatch(raw):
        raise ValidationError("malformed subscriber id: 1 to 128 of A-Z a-z 0-9 . _ : @ -, not `.` or `..`",
                              {"field": "id"})  # fmt: skip
    return raw


@functools.cache
def _zones() -> frozenset[str]:
    """The IANA zones this host's tz database holds; `localtime` and `posixrules` are files there, not zones."""
    return frozenset(zoneinfo.available_timezones() - {"localtime", "posixrules"}) | {"UTC"}


class _ZoneNames:
    """The served schema lists the zones the API takes (read when the document is built, not at import)."""

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "enum": sorted(_zones())}


def _timezone(value: str) -> str:
    if value not in _zones():
        raise invalid("`{field}` must be an IANA time zone, e.g. Europe/Paris", {"field": ""})
    return value


def _depth(value: Any) -> int:
    """How many objects and arrays are nested in one another at the deepest point (0 for a scalar)."""
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _json_data(value: Any) -> Any:
    """Any JSON object, at most 16 KiB and MAX_SUBSCRIBER_DATA_DEPTH levels; no NUL in any string (PostgreSQL's
    jsonb cannot hold one), and only finite numbers (the parser reads `NaN`, `Infinity` and `1e400`, which jsonb
    refuses). The depth is bounded so that the served schema can say all of it without referring to itself."""
    if value is None:
        return None
    if _depth(value) > MAX_SUBSCRIBER_DATA_DEPTH:
        raise invalid(f"`{{field}}` nests objects and arrays more than {MAX_SUBSCRIBER_DATA_DEPTH} levels deep",
                      {"field": "", "maxDepth": MAX_SUBSCRIBER_DATA_DEPTH})  # fmt: skip
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise invalid("`{field}` must hold finite numbers only (no NaN, Infinity or 1e400)", {"field": ""}) from None
    if "\\u0000" in encoded:
        raise invalid("`{field}` must not contain NUL characters", {"field": ""})
    if len(encoded.encode()) > MAX_SUBSCRIBER_DATA_BYTES:
        raise invalid(f"`{{field}}` exceeds {MAX_SUBSCRIBER_DATA_BYTES} bytes as JSON", {"field": ""})
    return value


def _data_schema(depth: int) -> dict[str, Any]:
    """What `_json_data` takes as a value `depth` containers deep at most: JSON Schema, spelt out level by level
    (a schema that refers to itself makes tools that inline references loop)."""
    scalars: list[dict[str, Any]] = [{"type": "string", "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"},
                                     {"type": "null"}]  # fmt: skip
    if depth == 0:
        return {"anyOf": scalars}
    inner = _data_schema(depth - 1)
    return {"anyOf": [{"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": inner},
                      {"type": "array", "items": inner}, *scalars]}  # fmt: skip


SubscriberData = Annotated[
    dict[str, Any] | None,
    AfterValidator(_json_data),
    WithJsonSchema({"anyOf": [
        {"type": "object", "propertyNames": {"pattern": NO_NUL},
         "additionalProperties": _data_schema(MAX_SUBSCRIBER_DATA_DEPTH - 1)},
        {"type": "null"}]}),
]  # fmt: skip
Email = Annotated[str, Field(max_length=254, pattern=f"^{EMAIL_RE.pattern}$")]
Phone = Annotated[str, Field(pattern=f"^{E164_RE.pattern}$")]
PushToken = Annotated[str, Field(pattern=f"^{PUSH_TOKEN_RE.pattern}$")]


class SubscriberPut(ApiModel):
    """The whole profile: a field left out is cleared (preferences are set apart and kept)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"email": "ada@example.com", "phone": "+15550000001", "pushTokens": ["mock-device-1"], "locale": "en-GB",
         "timezone": "Europe/London", "data": {"firstName": "Ada"}}]})  # fmt: skip

    email: Email | None = Field(None, description="Where email goes.")
    phone: Phone | None = Field(None, description="Where SMS goes (E.164).")
    push_tokens: Annotated[list[PushToken], Field(max_length=MAX_PUSH_TOKENS)] = Field(
        default_factory=list, description=f"Device tokens, at most {MAX_PUSH_TOKENS}; push goes to the last one."
    )
    locale: Annotated[str, Field(pattern=LOCALE_PATTERN, max_length=35)] | None = Field(
        None, description="A BCP 47 language tag, e.g. `en-GB`."
    )
    timezone: Annotated[
        str, Field(pattern=TIMEZONE_PATTERN, max_length=64), AfterValidator(_timezone), _ZoneNames()
    ] | None = Field(None, description="An IANA time zone, e.g. `Europe/Paris`.")  # fmt: skip
    data: SubscriberData = Field(
        None, description=f"Any JSON object (at most 16 KiB as JSON and {MAX_SUBSCRIBER_DATA_DEPTH} levels of objects "
        'and arrays, no NUL, finite numbers), e.g. `{"firstName": "Ada"}`; a subscriber campaign fills `{{ name }}` '
        "from it.",
    )  # fmt: skip

    def profile(self) -> Profile:
        return Profile(self.email, self.phone, list(self.push_tokens), self.locale, self.timezone, self.data)


class Subscriber(ApiModel):
    model_config = ConfigDict(strict=False)
    id: str = Field(pattern=SUBSCRIBER_ID_PATTERN)
    email: str | None
    phone: str | None
    push_tokens: list[str]
    locale: str | None
    timezone: str | None
    data: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: SubscriberRow) -> Subscriber:
        p = r.profile
        return cls(id=r.id, email=p.email, phone=p.phone, push_tokens=p.push_tokens, locale=p.locale,
                   timezone=p.timezone, data=p.data, created_at=r.created_at, updated_at=r.updated_at)  # fmt: skip


class SubscriberPage(Page[Subscriber]):
    """In id order."""


class SubscriberQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    limit: Limit = limit_field(50, 500)
    cursor: Annotated[str, Field(pattern=SUBSCRIBER_ID_PATTERN)] | None = Field(None, description="`nextCursor`.")


ChannelSwitches = Annotated[
    dict[Channel, bool],
    Field(description="Per channel: `false` turns it off. A channel left out is on."),
]
Category = Annotated[str, Field(pattern=CATEGORY_PATTERN)]


class _KeysMatch:
    """`propertyNames` for a dict's key pattern: pydantic writes `patternProperties`, which lets any key that does
    not match through (as a valid key with any value), while the API refuses it."""

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        ((pattern, value),) = schema.pop("patternProperties").items()
        return {**schema, "propertyNames": {"pattern": pattern}, "additionalProperties": value}


class Preferences(ApiModel):
    """What a subscriber wants. `channels` apply to every message; `categories` to messages of that category
    (`category` on the send), and transactional messages ignore them."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"channels": {"email": True, "sms": False, "push": True, "inapp": True},
         "categories": {"marketing": {"email": False}}}]})  # fmt: skip

    channels: ChannelSwitches = Field(default_factory=dict)
    categories: Annotated[dict[Category, ChannelSwitches], Field(max_length=MAX_CATEGORIES), _KeysMatch()] = Field(
        default_factory=dict, description=f"At most {MAX_CATEGORIES} categories."
    )

    def stored(self) -> dict[str, Any]:
        return {"channels": {str(c): v for c, v in self.channels.items()},
                "categories": {k: {str(c): v for c, v in s.items()} for k, s in self.categories.items()}}  # fmt: skip


class SubscriberToken(ApiModel):
    model_config = ConfigDict(strict=False)
    token: str = Field(description="A JWT for `/ws` and `/inbox` (its own audience: no admin endpoint takes it).")
    expires_at: datetime


class InboxNotification(ApiModel):
    model_config = ConfigDict(strict=False)
    id: str = Field(pattern=r"^[0-9]+$", description="The notification id (as in GET /notifications/{id}).")
    category: str | None
    subject: str | None
    body: str | None
    data: dict[str, Any] | None
    created_at: datetime
    delivered_at: datetime | None = Field(description="When a client ACKed it.")
    read_at: datetime | None

    @classmethod
    def of(cls, i: InboxItem) -> InboxNotification:
        return cls(id=str(i.id), category=i.category, subject=i.subject, body=i.body, data=i.data,
                   created_at=i.created_at, delivered_at=i.delivered_at, read_at=i.read_at)  # fmt: skip


class InboxPage(ApiModel):
    items: list[InboxNotification] = Field(description="Newest first.")
    unread_count: int = Field(ge=0, description="Unread notifications in the whole inbox (not just this page).")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class InboxQuery(ApiModel):
    model_config = ConfigDict(strict=False)
    limit: Limit = limit_field(20, 100)
    cursor: Annotated[str, Field(pattern=r"^[0-9]{1,19}$")] | None = Field(None, description="`nextCursor`.")
    unread: bool | None = Field(None, description="`true`: only unread; `false`: only read; absent: all.")


class ReadAllResult(ApiModel):
    updated: int = Field(ge=0, description="How many notifications were marked read.")
