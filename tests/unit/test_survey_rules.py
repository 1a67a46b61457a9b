"""Surveys as pure rules: who is asked, what answers a survey, and each channel's own form of the
choices (within the limits the providers document)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chalicelib.channels.base import Outgoing
from chalicelib.channels.line import message_objects
from chalicelib.channels.meta.graph import page_payloads, whatsapp_payloads
from chalicelib.channels.telegram import inline_keyboard
from chalicelib.domain.analytics import CycleState
from chalicelib.domain.surveys import SurveyConfig, answer_of, answered, choices, new_survey, rating_in, refusal

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CONFIG = SurveyConfig()


def cycle(**changes: object) -> CycleState:
    base = CycleState(
        cycle_id="cyc_01JABCDEFG0123456789AB",
        conversation_id="con_1",
        customer_id="cus_1",
        started_at=NOW - timedelta(hours=1),
        channel="sms",
        last_channel="sms",
        queue="general",
        customer_messages=2,
        resolved_at=NOW - timedelta(minutes=1),
        resolved_by="agent",
        resolved_agent_id="ada",
    )
    return base.model_copy(update=changes)


@pytest.mark.parametrize(
    ("changes", "config", "last", "why"),
    [
        ({}, CONFIG, None, None),
        ({"resolved_by": "bot"}, CONFIG, None, "no agent"),
        ({"resolved_by": "nobody"}, CONFIG, None, "no agent"),
        ({"resolved_at": None}, CONFIG, None, "not resolved"),
        ({"customer_messages": 1}, SurveyConfig(min_customer_messages=2), None, "too few"),
        ({}, SurveyConfig(queues_off=["general"]), None, "queue"),
        ({}, CONFIG, NOW - timedelta(hours=2), "recently"),
        ({}, CONFIG, NOW - timedelta(hours=25), None),
        ({}, SurveyConfig(enabled=False), None, "off"),
    ],
)
def test_who_is_asked(changes: dict[str, object], config: SurveyConfig, last: datetime | None, why: str | None) -> None:
    reason = refusal(cycle(**changes), config, last, NOW)
    assert (reason is None) if why is None else (reason is not None and why in reason)


@pytest.mark.parametrize(
    ("text", "rating"),
    [("5", 5), (" 3. ", 3), ("csat:4", 4), ("4 Good", 4), ("1 very poor", 1), ("★★", 2), ("⭐⭐⭐⭐⭐", 5)],
)
def test_what_is_a_rating(text: str, rating: int) -> None:
    assert rating_in(text, CONFIG) == rating


@pytest.mark.parametrize("text", ["6", "0", "1 more thing", "5 days late!", "", "csat:9", "x" * 500, "12"])
def test_what_is_not_a_rating(text: str) -> None:
    assert rating_in(text, CONFIG) is None


def test_a_rating_then_a_comment_within_the_window_then_nothing() -> None:
    survey = new_survey(cycle(), "sms", NOW, CONFIG)
    assert survey.agent_ids == ["ada"]
    assert answer_of(survey, "where is my parcel", "m0", NOW, CONFIG) is None, "an ordinary message"
    rated = answered(survey, ("rating", 2, None), "m1", NOW)
    assert answer_of(rated, "4", "m2", NOW, CONFIG) == ("rating", 4, None), "changed before the comment"
    assert answer_of(rated, "slow", "m3", NOW + timedelta(minutes=5), CONFIG) == ("comment", None, "slow")
    assert answer_of(rated, "slow", "m3", NOW + timedelta(hours=2), CONFIG) is None, "too late for a comment"
    done = answered(rated, ("comment", None, "slow"), "m3", NOW)
    assert done.status == "done" and answer_of(done, "5", "m4", NOW, CONFIG) is None
    expired = survey.model_copy(update={"expires_at": NOW - timedelta(seconds=1)})
    assert answer_of(expired, "5", "m5", NOW, CONFIG) is None


CHOICES = choices(CONFIG)


def outgoing(channel: str) -> Outgoing:
    return Outgoing(channel=channel, recipient="1234", body="How did we do?", hub_message_id="msg_1", choices=CHOICES)


def test_whatsapp_gets_an_interactive_list_within_metas_limits() -> None:
    [payload] = whatsapp_payloads(outgoing("whatsapp"), "15017122661")
    interactive = payload["interactive"]
    assert payload["type"] == "interactive" and interactive["type"] == "list"
    rows = interactive["action"]["sections"][0]["rows"]
    assert [row["id"] for row in rows] == ["csat:5", "csat:4", "csat:3", "csat:2", "csat:1"]
    assert len(rows) <= 10 and all(len(row["title"]) <= 24 for row in rows)
    assert len(interactive["action"]["button"]) <= 20 and interactive["body"]["text"] == "How did we do?"


@pytest.mark.parametrize("channel", ["messenger", "instagram"])
def test_messenger_and_instagram_get_quick_replies(channel: str) -> None:
    [payload] = page_payloads(outgoing(channel))
    replies = payload["message"]["quick_replies"]
    assert len(replies) <= 13 and all(len(r["title"]) <= 20 and r["content_type"] == "text" for r in replies)
    assert replies[0]["payload"] == "csat:5"


def test_telegram_gets_an_inline_keyboard_and_line_quick_replies() -> None:
    keyboard = inline_keyboard(CHOICES)["inline_keyboard"]
    assert [row[0]["callback_data"] for row in keyboard] == ["csat:5", "csat:4", "csat:3", "csat:2", "csat:1"]
    assert all(1 <= len(row[0]["callback_data"].encode()) <= 64 for row in keyboard)
    [text] = message_objects("How did we do?", (), CHOICES)
    items = text["quickReply"]["items"]
    assert len(items) <= 13 and all(len(item["action"]["label"]) <= 20 for item in items)
    assert items[0]["action"] == {"type": "message", "label": "5 Excellent", "text": "5 Excellent"}


def test_web_chat_shows_the_choices_as_buttons_of_the_message() -> None:
    from chalicelib.channels.webchat import visitor_view
    from chalicelib.domain.messages import DeliveryStatus, Direction, Message

    message = Message(
        id="msg_01JABCDEFG0123456789ABCDEF",
        conversation_id="con_1",
        customer_id="cus_1",
        channel="webchat",
        direction=Direction.OUTBOUND,
        body="How did we do?",
        status=DeliveryStatus.SENT,
        created_at=NOW,
        choices=[{"id": choice_id, "label": label} for choice_id, label in CHOICES],
    )
    assert visitor_view(message)["choices"] == ["5 Excellent", "4 Good", "3 OK", "2 Poor", "1 Very poor"]


# --- The answers coming back: each channel's tap is the customer's message ----------------------------


def test_a_line_postback_of_a_hub_choice_is_the_answer_as_typed() -> None:
    import json as json_

    from chalicelib.channels import line

    event = {
        "type": "postback",
        "mode": "active",
        "timestamp": 1700000000000,
        "webhookEventId": "01HSURVEYPOSTBACK0000000001",
        "deliveryContext": {"isRedelivery": False},
        "replyToken": "b60d432864f44d079f6d8efe86cf404b",
        "source": {"type": "user", "userId": "U4af4980629ab2d1f8b1c1d1d1d1d1d1d"},
        "postback": {"data": "csat:4"},
    }
    body = json_.dumps({"destination": "Uxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "events": [event]}).encode()
    [item] = line.parse(
        line.WebhookRequest(method="POST", path="/webhooks/line", headers={}, body=body)  # parse only, unverified
    )
    assert item.body == "csat:4" and rating_in(item.body, CONFIG) == 4


def test_meta_list_replies_and_quick_replies_read_as_the_rating() -> None:
    from chalicelib.channels.meta.whatsapp import _interactive_text

    reply = {"type": "list_reply", "list_reply": {"id": "csat:2", "title": "2 Poor"}}
    assert rating_in(_interactive_text(reply) or "", CONFIG) == 2
    assert rating_in("csat:3", CONFIG) == 3, "a Messenger quick reply's payload"


def test_texts_and_labels_follow_the_customers_language() -> None:
    from chalicelib.domain.surveys import language_of

    config = SurveyConfig(languages={"tr": {"question": "Nasıldı?", "5": "5 Harika"}})
    assert language_of({"language": "tr-TR"}) == "tr-tr" and language_of({}) is None
    assert config.text("question", "tr-TR") == "Nasıldı?"
    assert config.text("thanks", "tr").startswith("Thank you"), "a text not translated: the default"
    assert choices(config, "tr")[0] == ("csat:5", "5 Harika") and choices(config)[0] == ("csat:5", "5 Excellent")
    assert rating_in("5 harika", config) == 5
