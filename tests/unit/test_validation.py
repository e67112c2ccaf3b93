"""The request rules, checked through the API's models without a server: messages and details stay exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
import pytest

from notifq.api.contract import translate
from notifq.api.models.campaigns import CampaignCreate
from notifq.api.models.notifications import NotificationBatch, NotificationCreate, RedriveRequest
from notifq.errors import ValidationError
from notifq.validation import MAX_NAME, MAX_REPORTED, check_send_at, is_idempotency_key

BATCH: pydantic.TypeAdapter[list[NotificationCreate]] = pydantic.TypeAdapter(NotificationBatch)


def campaign(raw: str, max_size: int = 100) -> CampaignCreate:
    return CampaignCreate.model_validate_json(raw, context={"max_campaign_size": max_size})


def refused(parse: Any, raw: str, **kwargs: Any) -> ValidationError:
    with pytest.raises(pydantic.ValidationError) as caught:
        parse(raw, **kwargs)
    return translate(caught.value)


def test_a_campaign_with_recipients_and_vars() -> None:
    body = campaign('{"name": "n", "subject": "Hi {{ who }}", "recipients": [{"to": "a@example.com", '
                    '"vars": {"who": "Ada", "n": 2}}]}')  # fmt: skip
    request = body.request()
    assert request.recipients == [("a@example.com", '{"who": "Ada", "n": "2"}')]
    assert request.total == 1 and request.recipient_count is None


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"recipients": ["a@example.com"]}', "name"),
        ('{"name": 5, "recipients": ["a@example.com"]}', "name"),
        ('{"name": "  ", "recipients": ["a@example.com"]}', "name"),
        ('{"name": "a\\nb", "recipients": ["a@example.com"]}', "name"),
        (f'{{"name": "{"x" * (MAX_NAME + 1)}", "recipients": ["a@example.com"]}}', "name"),
        ('{"name": "n", "subject": "a\\rb", "recipients": ["a@example.com"]}', "subject"),
        ('{"name": "n", "channel": "fax", "recipients": ["a@example.com"]}', "channel"),
        ('{"name": "n", "sendAt": "2030-01-01T00:00:00", "recipients": ["a@example.com"]}', "sendAt"),
        ('{"name": "n", "recipientCount": "5"}', "recipientCount"),
        ('{"name": "n", "recipientCount": 0}', "recipientCount"),
        ('{"name": "n", "recipients": []}', "recipients"),
        ('{"name": "n", "recipients": ["a@example.com"], "body": "{{ x }}"}', "recipients"),
        ('{"name": "n", "recipients": [{"to": "a@example.com", "vars": {"k": true}}]}', "recipients[0].vars.k"),
        (
            '{"name": "n", "recipients": [{"to": "a@example.com", "vars": {"k\\u0000": "v"}}]}',
            "recipients[0].vars.k\x00",
        ),
    ],
)
def test_campaign_errors_name_the_field(raw: str, field: str) -> None:
    error = refused(campaign, raw)
    assert error.details["field"] == field, error.details
    assert error.message


def test_both_or_neither_recipient_forms_is_refused() -> None:
    for raw in ('{"name": "n"}', '{"name": "n", "recipients": ["a@example.com"], "recipientCount": 1}'):
        assert refused(campaign, raw).details == {"fields": ["recipients", "subscribers", "recipientCount"]}


def test_invalid_recipients_are_listed_up_to_ten() -> None:
    bad = ", ".join(f'"bad{i}"' for i in range(15))
    error = refused(campaign, f'{{"name": "n", "recipients": ["a@example.com", {bad}, 7, null]}}')
    assert error.details["field"] == "recipients"
    assert len(error.details["invalid"]) == MAX_REPORTED
    assert error.details["invalid"][0] == {"index": 1, "value": "bad0"}


def test_the_campaign_size_limit_comes_from_the_settings() -> None:
    assert refused(campaign, '{"name": "n", "recipientCount": 11}', max_size=10).details == {
        "field": "recipientCount", "min": 1, "max": 10}  # fmt: skip
    assert campaign('{"name": "n", "recipientCount": 10}', max_size=10).request().total == 10


def test_a_notification_checks_its_address_against_its_channel() -> None:
    ok = NotificationCreate.model_validate_json('{"channel": "sms", "to": "+15550001234", "body": "b"}')
    assert ok.request().to == "+15550001234"
    error = refused(NotificationCreate.model_validate_json, '{"channel": "sms", "to": "a@example.com", "body": "b"}')
    assert error.details["field"] == "to"


def test_batch_errors_carry_the_item_index() -> None:
    raw = '[{"to": "a@example.com", "body": "b"}, {"to": "a@example.com", "body": "b"}, {"to": "x", "body": "b"}]'
    assert refused(BATCH.validate_json, raw).details["field"] == "[2].to"
    assert refused(BATCH.validate_json, '[{"to": "a@example.com"}]').details["field"] == "[0].body"
    assert refused(BATCH.validate_json, "[]").details == {"min": 1}


def test_push_data_is_strings_within_4_kib() -> None:
    body = NotificationCreate.model_validate_json('{"channel": "push", "to": "mock-1", "body": "b", "data": {"n": 1}}')
    assert body.request().data == {"n": "1"}
    big = "x" * 5000
    error = refused(NotificationCreate.model_validate_json,
                    f'{{"channel": "push", "to": "mock-1", "body": "b", "data": {{"k": "{big}"}}}}')  # fmt: skip
    assert error.details == {"field": "data"}


@pytest.mark.parametrize("raw", ['{"name": "\\ud800", "recipientCount": 1}', '{"x": ' + "[" * 300 + "]" * 300 + "}"])
def test_unencodable_or_too_deep_json_is_malformed(raw: str) -> None:
    error = refused(campaign, raw)
    assert error.message == "malformed JSON"


def test_send_at_rules() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert check_send_at(now - timedelta(days=1), now=now) is None  # the past means now
    assert check_send_at(now + timedelta(days=1), now=now) == now + timedelta(days=1)
    with pytest.raises(ValidationError):
        check_send_at(now + timedelta(days=400), now=now)
    with pytest.raises(ValidationError):
        check_send_at(datetime(2026, 6, 1), now=now)


def test_redrive_takes_exactly_one_of_ids_or_filter() -> None:
    assert RedriveRequest.model_validate_json('{"ids": ["1", 2]}').message_ids() == [1, 2]
    assert refused(RedriveRequest.model_validate_json, '{"ids": ["0"]}').details == {"field": "ids[0]"}
    assert refused(RedriveRequest.model_validate_json, "{}").details == {"fields": ["ids", "filter"]}
    assert refused(RedriveRequest.model_validate_json, '{"filter": {"x": 1}}').details["field"] == "filter.x"


def test_idempotency_keys_are_printable_ascii() -> None:
    assert is_idempotency_key("order-42")
    assert not is_idempotency_key("") and not is_idempotency_key("é") and not is_idempotency_key("a\x00")
    assert not is_idempotency_key("k" * 256)
