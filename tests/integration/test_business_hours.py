"""Business hours schedules against the AWS emulator: stored one item per schedule, written and
read by key (one request per operation, never a Scan), their status computed from what was
stored; and the REST API over them, hostile input included."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from chalice.test import Client

from tests.conftest import Hub

API = {"Authorization": "Bearer test-api-key", "Content-Type": "application/json"}

SUPPORT = {
    "timezone": "Europe/Istanbul",
    "weekly": {day: [{"start": "09:00", "end": "12:30"}, {"start": "13:30", "end": "18:00"}] for day in ("mon", "tue")},
    "exceptions": {"2025-01-07": []},  # a Tuesday off
    "default_language": "tr",
}


def count_requests() -> Counter[str]:
    from chalicelib import aws

    calls: Counter[str] = Counter()

    def record(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}.{model.name}"] += 1

    aws.client("dynamodb").meta.events.register("before-call", record)
    return calls


# --- Store and service -------------------------------------------------------------------------


def test_a_schedule_is_created_replaced_read_and_deleted(hub: Hub) -> None:
    from chalicelib.services import business_hours
    from chalicelib.services.errors import NotFound

    calls = count_requests()
    # When a schedule is put twice
    created, was_created = business_hours.put_schedule("support", SUPPORT)
    replaced, replaced_created = business_hours.put_schedule("support", {**SUPPORT, "exceptions": {}})
    # Then the first created it and the second replaced it, one PutItem each
    assert (was_created, replaced_created) == (True, False)
    assert calls == Counter({"dynamodb.PutItem": 2})
    assert created.exceptions == {"2025-01-07": []} and replaced.exceptions == {}

    # and it is one item under its own key
    item = hub.client("dynamodb").get_item(TableName=hub.table_name, Key={"pk": {"S": "BH#support"}, "sk": {"S": "BH"}})
    assert item["Item"]["timezone"] == {"S": "Europe/Istanbul"}
    assert hub.item_count() == 1

    calls.clear()
    stored = business_hours.get_schedule("support")
    assert calls == Counter({"dynamodb.GetItem": 1})
    assert stored.model_dump(exclude={"updated_at"}) == replaced.model_dump(exclude={"updated_at"})
    assert stored.updated_at is not None and stored.weekly.mon[1].start == "13:30"
    assert business_hours.load_schedule("support") == stored

    calls.clear()
    business_hours.delete_schedule("support")
    assert calls == Counter({"dynamodb.DeleteItem": 1})
    with pytest.raises(NotFound):
        business_hours.get_schedule("support")
    with pytest.raises(NotFound):
        business_hours.delete_schedule("support")
    assert business_hours.load_schedule("support") is None
    assert hub.item_count() == 0


def test_status_reads_the_stored_schedule(hub: Hub) -> None:
    from chalicelib.services import business_hours

    business_hours.put_schedule("support", SUPPORT)
    calls = count_requests()
    # Monday 2025-01-06 12:45 in Istanbul (09:45 UTC): the lunch break
    lunch = business_hours.status("support", "2025-01-06T12:45:00+03:00")
    assert calls == Counter({"dynamodb.GetItem": 1})
    assert (lunch.open, lunch.next_change, lunch.next_opening) == (
        False,
        datetime(2025, 1, 6, 10, 30, tzinfo=UTC),
        datetime(2025, 1, 6, 10, 30, tzinfo=UTC),
    )
    # After Monday comes the Tuesday off: the next opening is Monday a week later
    evening = business_hours.status("support", datetime(2025, 1, 6, 16, 0, tzinfo=UTC))
    assert evening.next_opening == datetime(2025, 1, 13, 6, 0, tzinfo=UTC)
    # Open: the next opening is now
    morning = business_hours.status("support", "2025-01-13T07:00:00Z")
    assert (
        morning.open
        and morning.next_opening == morning.at
        and morning.next_change == morning.at.replace(hour=9, minute=30)
    )
    # Without `at`, now
    now = business_hours.status("support")
    assert abs(now.at - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({**SUPPORT, "timezone": "Asia/Atlantis"}, "timezone"),
        (
            {**SUPPORT, "weekly": {"mon": [{"start": "09:00", "end": "12:00"}, {"start": "11:00", "end": "13:00"}]}},
            "overlap",
        ),
        ({**SUPPORT, "weekly": {"mon": [{"start": "9am", "end": "12:00"}]}}, "weekly.mon.0.start"),
        ({**SUPPORT, "exceptions": {"Christmas": []}}, "not a date"),
        ({**SUPPORT, "holidays": {}}, "holidays"),
        ({**SUPPORT, "id": "other"}, "differs from the path"),
        ({"weekly": {}}, "timezone"),
        ({**SUPPORT, "weekly": []}, "weekly"),
    ],
)
def test_invalid_schedules_are_refused_and_nothing_is_stored(hub: Hub, body: dict[str, Any], fragment: str) -> None:
    from chalicelib.services import business_hours
    from chalicelib.services.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=fragment):
        business_hours.put_schedule("support", body)
    assert hub.item_count() == 0


@pytest.mark.parametrize("schedule_id", ["", "a b", "x" * 65, "../BH", "süpport", "a#b"])
def test_ids_that_cannot_name_a_schedule_are_refused_without_a_request(hub: Hub, schedule_id: str) -> None:
    from chalicelib.services import business_hours
    from chalicelib.services.errors import InvalidRequest

    calls = count_requests()
    for operation in (business_hours.get_schedule, business_hours.delete_schedule, business_hours.status):
        with pytest.raises(InvalidRequest, match="1 to 64"):
            operation(schedule_id)
    with pytest.raises(InvalidRequest, match="1 to 64"):
        business_hours.put_schedule(schedule_id, SUPPORT)
    assert business_hours.load_schedule(schedule_id) is None
    assert calls == Counter()


def test_a_bad_instant_is_refused(hub: Hub) -> None:
    from chalicelib.services import business_hours
    from chalicelib.services.errors import InvalidRequest

    business_hours.put_schedule("support", SUPPORT)
    for at in ("tomorrow", "2025-01-06T10:00:00", "0001-01-01T00:00:00Z"):
        with pytest.raises(InvalidRequest, match="'at'"):
            business_hours.status("support", at)
    with pytest.raises(InvalidRequest, match="timezone-aware"):
        business_hours.status("support", datetime(2025, 1, 6, 10, 0))


# --- The REST API ------------------------------------------------------------------------------


@pytest.fixture
def client(hub: Hub) -> Iterator[Client]:
    import app

    with Client(app.app) as test_client:
        yield test_client


def call(client: Client, method: str, path: str, body: Any = None, raw: str | None = None) -> tuple[int, Any]:
    payload = raw if raw is not None else (json.dumps(body) if body is not None else None)
    response = getattr(client.http, method)(path, headers=API, **({"body": payload} if payload is not None else {}))
    return response.status_code, json.loads(response.body or b"null")


def test_the_api_puts_gets_reports_status_and_deletes(client: Client) -> None:
    status, created = call(client, "put", "/v1/business-hours/support", SUPPORT)
    assert status == 201
    assert created["weekly"]["mon"] == SUPPORT["weekly"]["mon"] and created["weekly"]["sun"] == []
    assert created["timezone"] == "Europe/Istanbul" and created["default_language"] == "tr"
    assert created["updated_at"].endswith("Z")

    # What a GET answers can be sent back as it is
    status, fetched = call(client, "get", "/v1/business-hours/support")
    assert (status, fetched) == (200, created)
    status, replaced = call(client, "put", "/v1/business-hours/support", fetched)
    assert status == 200 and replaced["weekly"] == created["weekly"]

    status, answer = call(client, "get", "/v1/business-hours/support/status?at=2025-01-06T12:45:00%2B03:00")
    assert status == 200
    assert answer == {
        "id": "support",
        "timezone": "Europe/Istanbul",
        "at": "2025-01-06T09:45:00Z",
        "at_local": "2025-01-06T12:45:00+03:00",
        "open": False,
        "state": "closed",
        "next_change": "2025-01-06T10:30:00Z",
        "next_change_local": "2025-01-06T13:30:00+03:00",
        "next_opening": "2025-01-06T10:30:00Z",
        "next_opening_local": "2025-01-06T13:30:00+03:00",
    }
    # An unencoded '+' arrives as a space and still reads as the offset
    status, same = call(client, "get", "/v1/business-hours/support/status?at=2025-01-06T12:45:00+03:00")
    assert (status, same["at"]) == (200, "2025-01-06T09:45:00Z")
    status, now = call(client, "get", "/v1/business-hours/support/status")
    assert status == 200 and now["state"] in {"open", "closed"}

    response = client.http.delete("/v1/business-hours/support", headers=API)
    assert (response.status_code, response.body) == (204, b"")
    status, missing = call(client, "get", "/v1/business-hours/support")
    assert status == 404 and missing["error"]["code"] == "not_found"
    assert call(client, "get", "/v1/business-hours/support/status")[0] == 404
    assert call(client, "delete", "/v1/business-hours/support")[0] == 404


def test_status_in_new_york_across_the_spring_change(client: Client) -> None:
    body = {"timezone": "America/New_York", "weekly": {"sun": [{"start": "02:30", "end": "05:00"}]}}
    assert call(client, "put", "/v1/business-hours/ny", body)[0] == 201
    status, answer = call(client, "get", "/v1/business-hours/ny/status?at=2025-03-09T05:00:00Z")
    assert status == 200
    assert (answer["next_opening"], answer["next_opening_local"]) == (
        "2025-03-09T07:00:00Z",
        "2025-03-09T03:00:00-04:00",
    )
    assert answer["at_local"] == "2025-03-09T00:00:00-05:00"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("at=yesterday", "'at'"),
        ("at=2025-01-06T10:00:00", "UTC offset"),
        ("at=" + "9" * 500, "'at'"),
        ("at=99999-01-01T00:00:00Z", "'at'"),
        ("at=2025-01-06T10:00:00Z&at=2025-01-07T10:00:00Z", "more than once"),
        ("at=", "'at'"),
        ("at=%00", "'at'"),
    ],
)
def test_a_bad_at_is_a_400_json_error(client: Client, query: str, fragment: str) -> None:
    call(client, "put", "/v1/business-hours/support", SUPPORT)
    status, answer = call(client, "get", f"/v1/business-hours/support/status?{query}")
    assert status == 400
    assert answer["error"]["code"] == "invalid_request" and fragment in answer["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty"),
        ("[]", "JSON object"),
        ("{", "not valid JSON"),
        ('{"timezone": "UTC", "weekly": {"mon": [{"start": "09:00", "end": "09:00"}]}}', "empty"),
        ('{"timezone": "UTC", "weekly": {"mon": "09:00-17:00"}}', "weekly.mon"),
        (
            '{"timezone": "UTC", "weekly": {"mon": [' + ",".join(['{"start": "01:00", "end": "02:00"}'] * 11) + "]}}",
            "10",
        ),
        ('{"timezone": "UTC", "exceptions": {' + ",".join(f'"{n}": []' for n in range(401)) + "}}", "400"),
        ('{"timezone": ' + '"' + "A" * 100 + '"}', "timezone"),
        ('{"timezone": "UTC", "default_language": "Klingon!"}', "default_language"),
        ('{"timezone": "UTC", "weekly": {"mon": [{"start": "09:00", "end": "10:00"}]}, "extra": 1}', "extra"),
    ],
)
def test_hostile_bodies_are_400_and_store_nothing(client: Client, hub: Hub, raw: str, fragment: str) -> None:
    status, answer = call(client, "put", "/v1/business-hours/support", raw=raw)
    assert status == 400, answer
    assert fragment in answer["error"]["message"]
    assert hub.item_count() == 0


@pytest.mark.parametrize("path", ["/v1/business-hours/a%20b", "/v1/business-hours/" + "x" * 65])
def test_bad_ids_are_400(client: Client, path: str) -> None:
    assert call(client, "get", path)[0] == 400
    assert call(client, "put", path, SUPPORT)[0] == 400
    assert call(client, "get", path + "/status")[0] == 400


def test_the_api_needs_the_key(client: Client) -> None:
    response = client.http.get("/v1/business-hours/support")
    assert response.status_code == 401
