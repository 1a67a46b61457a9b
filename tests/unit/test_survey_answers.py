"""A survey answer as each provider really delivers it, through the real channel parser and then
`answer_of` / `rating_in`: the payload shapes are the providers' documented webhook bodies.

- LINE: a `postback` event whose `data` is the choice id (`csat:4`), and a quick-reply tap, which
  LINE sends as a text `message` event holding the label (Messaging API, webhook events).
- WhatsApp Cloud API: `messages[].type == "interactive"` with `interactive.list_reply` or
  `interactive.button_reply` (`id`, `title`); the hub reads the id of its own choice, since the
  title is cut to 24 characters (WhatsApp webhooks reference, interactive messages).
- Messenger and Instagram: a `messaging[].message` with `text` (the tapped title, cut to 20
  characters) and `quick_reply.payload` (the choice id); the payload wins for the hub's choices.
- Telegram: an Update with `callback_query` (`id`, `from`, `message`, `chat_instance`, `data`); its
  `data` is the answer and its `id` rides as the reply token the next send answers with
  `answerCallbackQuery` (Bot API, CallbackQuery).
- Web chat: a button tap sends the label as the visitor's message.
- SMS (Twilio's form): what is a rating and what is not, as `rating_in` documents it. Accepted: a
  digit 1-5 alone (" 4 ", "3.", full-width U+FF15), out of five ("4/5", "5 stars", "5 estrellas"),
  a number word ("five", "cinco", "fünf"), a label in any built-in language, stars. Not a rating:
  "0", "6", "10/10", "4.5", "6 stars", a rating inside a sentence, bare adjectives ("good").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib.channels.base import WebhookRequest
from chalicelib.domain.analytics import CycleState
from chalicelib.domain.messages import Channel, InboundMessage
from chalicelib.domain.surveys import Survey, SurveyConfig, answer_of, choices, new_survey, rating_in

EVENTS = Path(__file__).parents[2] / "events"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CONFIG = SurveyConfig()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    from chalicelib.config import settings

    settings.cache_clear()
    yield
    settings.cache_clear()


def open_survey(channel: str) -> Survey:
    cycle = CycleState(
        cycle_id="cyc_01JABCDEFG0123456789AB",
        conversation_id="con_1",
        customer_id="cus_1",
        started_at=NOW - timedelta(hours=1),
        channel=channel,
        last_channel=channel,
        queue="general",
        customer_messages=2,
        resolved_at=NOW - timedelta(minutes=2),
        resolved_by="agent",
        resolved_agent_id="ada",
    )
    return new_survey(cycle, channel, NOW - timedelta(minutes=1), CONFIG)


def only_message(items: list[Any]) -> InboundMessage:
    assert len(items) == 1 and isinstance(items[0], InboundMessage), items
    return items[0]


def rates(message: InboundMessage, rating: int, config: SurveyConfig = CONFIG) -> bool:
    """The parsed message answers an open survey on its channel with `rating`."""
    survey = open_survey(message.channel.value)
    return answer_of(survey, message.body, message.provider_message_id, NOW, config) == ("rating", rating, None)


def json_request(path: str, payload: dict[str, Any]) -> WebhookRequest:
    # Parse only: signatures are the verify step's business, tested with each channel.
    body = json.dumps(payload).encode()
    return WebhookRequest(method="POST", path=path, headers={"content-type": "application/json"}, body=body)


# --- LINE -------------------------------------------------------------------------------------------

LINE_USER = "U4af4980629ab2d1f8b1c1d1d1d1d1d1d"
LINE_BOT = "U" + "0123456789abcdef" * 2


def line_event(**content: Any) -> dict[str, Any]:
    return {
        "mode": "active",
        "timestamp": int(NOW.timestamp() * 1000),
        "webhookEventId": "01HQ8Z9X4V7K2M3N5P6R8S9T0W",
        "deliveryContext": {"isRedelivery": False},
        "replyToken": "b60d432864f44d079f6d8efe86cf404b",
        "source": {"type": "user", "userId": LINE_USER},
        **content,
    }


def parse_line(event: dict[str, Any]) -> InboundMessage:
    from chalicelib.channels import line

    return only_message(line.parse(json_request("/webhooks/line", {"destination": LINE_BOT, "events": [event]})))


@pytest.mark.parametrize("rating", [1, 3, 5])
def test_a_line_postback_with_the_choice_id_rates(rating: int) -> None:
    message = parse_line(line_event(type="postback", postback={"data": f"csat:{rating}"}))
    assert message.channel is Channel.LINE and message.body == f"csat:{rating}"
    assert message.reply_token == "b60d432864f44d079f6d8efe86cf404b", "the thanks can reply for free"
    assert rates(message, rating)


def test_a_line_quick_reply_tap_is_a_text_message_with_the_label() -> None:
    # The survey's LINE quick reply is a "message" action: the tap sends its text, the label.
    [_, (_, label)] = choices(CONFIG, "es")[:2]
    assert label == "4 Bien"
    message = parse_line(
        line_event(type="message", message={"id": "468789577898262530", "type": "text", "text": label})
    )
    assert message.body == "4 Bien" and rates(message, 4)


def test_a_line_postback_of_something_else_is_no_rating() -> None:
    message = parse_line(line_event(type="postback", postback={"data": "action=buy&itemid=5"}))
    assert message.body.startswith("[postback]") and not rates(message, 5)


# --- WhatsApp Cloud API ------------------------------------------------------------------------------

WA_ID = "16315551234"


def whatsapp_reply(kind: str, reply: dict[str, str]) -> dict[str, Any]:
    message = {
        "context": {"from": "15550783881", "id": "wamid.HBgLMTYzMTU1NTEyMzQVAgARGBI1NjJCNTY0NDBEMjMxQjEyQ0MA"},
        "from": WA_ID,
        "id": f"wamid.SURVEY-{kind}-{reply['id']}",
        "timestamp": str(int(NOW.timestamp())),
        "type": "interactive",
        "interactive": {"type": kind, kind: reply},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": "106540352242922"},
        "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": WA_ID}],
        "messages": [message],
    }
    change = {"value": value, "field": "messages"}
    return {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [change]}]}


def parse_meta(payload: dict[str, Any]) -> InboundMessage:
    from chalicelib.channels import meta

    return only_message(meta.parse(json_request("/webhooks/meta", payload)))


@pytest.mark.parametrize(
    ("kind", "reply", "rating"),
    [
        ("list_reply", {"id": "csat:2", "title": "2 Poor"}, 2),
        ("list_reply", {"id": "csat:5", "title": "5 Excelente", "description": ""}, 5),
        ("button_reply", {"id": "csat:4", "title": "4 Good"}, 4),
        ("button_reply", {"id": "csat:1", "title": "1 Very poor"}, 1),
    ],
)
def test_a_whatsapp_list_row_or_reply_button_rates(kind: str, reply: dict[str, str], rating: int) -> None:
    message = parse_meta(whatsapp_reply(kind, reply))
    assert message.channel is Channel.WHATSAPP and message.body == reply["id"]
    assert message.sender.value == "+" + WA_ID and rates(message, rating)


def test_a_whatsapp_row_title_cut_to_24_characters_still_rates_by_its_id() -> None:
    config = SurveyConfig(labels={3: "3 It was fine, nothing more"})  # 27 characters: WhatsApp shows 24
    [row] = [row for row in choices(config) if row[0] == "csat:3"]
    message = parse_meta(whatsapp_reply("list_reply", {"id": row[0], "title": row[1][:24]}))
    assert rating_in(row[1][:24], config) is None, "the cut title alone would not read as a rating"
    assert rates(message, 3, config)


def test_a_whatsapp_reply_to_another_list_is_its_title_and_no_rating() -> None:
    message = parse_meta(whatsapp_reply("list_reply", {"id": "slot-tue-10", "title": "Tuesday 10:00"}))
    assert message.body == "Tuesday 10:00" and not rates(message, 1)


# --- Messenger and Instagram ------------------------------------------------------------------------

PAGE_ID, PSID = "107485388405331", "6245087298860497"
IG_ID, IGSID = "17841405822304914", "1914827532176842"


def quick_reply_tap(obj: str, account: str, user: str, title: str, payload: str) -> dict[str, Any]:
    event = {
        "sender": {"id": user},
        "recipient": {"id": account},
        "timestamp": int(NOW.timestamp() * 1000),
        "message": {"mid": f"m_SURVEY-{obj}-{payload}", "text": title, "quick_reply": {"payload": payload}},
    }
    return {"object": obj, "entry": [{"id": account, "time": int(NOW.timestamp() * 1000), "messaging": [event]}]}


@pytest.mark.parametrize(
    ("obj", "account", "user", "channel"),
    [("page", PAGE_ID, PSID, Channel.MESSENGER), ("instagram", IG_ID, IGSID, Channel.INSTAGRAM)],
)
@pytest.mark.parametrize(("title", "rating"), [("5 Excellent", 5), ("3 Regular", 3), ("1 Very poor", 1)])
def test_a_messenger_or_instagram_quick_reply_rates_by_its_payload(
    obj: str, account: str, user: str, channel: Channel, title: str, rating: int
) -> None:
    message = parse_meta(quick_reply_tap(obj, account, user, title, f"csat:{rating}"))
    assert message.channel is channel and message.sender.value == user
    assert message.body == f"csat:{rating}" and rates(message, rating)


def test_a_quick_reply_title_cut_to_20_characters_still_rates_by_its_payload() -> None:
    config = SurveyConfig(labels={2: "2 Not what I hoped for"})  # 22 characters: Meta shows 20
    message = parse_meta(quick_reply_tap("page", PAGE_ID, PSID, "2 Not what I hoped f", "csat:2"))
    assert rates(message, 2, config)


def test_another_quick_reply_keeps_its_title_and_is_no_rating() -> None:
    message = parse_meta(quick_reply_tap("page", PAGE_ID, PSID, "Is my order on its way?", "ORDER_STATUS"))
    assert message.body == "Is my order on its way?" and not rates(message, 5)


# --- Telegram ---------------------------------------------------------------------------------------


@pytest.fixture
def telegram_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_USERNAME", "AcmeHelpBot")


def telegram_tap(data: str, query_id: str = "530326581292418513") -> dict[str, Any]:
    update = json.loads((EVENTS / "telegram" / "callback_query.json").read_text())
    update["callback_query"]["data"] = data
    update["callback_query"]["id"] = query_id
    return update


@pytest.mark.usefixtures("telegram_settings")
@pytest.mark.parametrize("rating", [1, 2, 3, 4, 5])
def test_a_telegram_inline_button_rates_and_carries_its_query_id(rating: int) -> None:
    from chalicelib.channels import telegram

    message = only_message(telegram.parse(json_request("/webhooks/telegram", telegram_tap(f"csat:{rating}"))))
    assert message.channel is Channel.TELEGRAM and message.body == f"csat:{rating}"
    assert message.provider_message_id == "578923422", "the update id dedupes Telegram's retries"
    assert message.reply_token == "530326581292418513", "answerCallbackQuery needs the query id"
    assert rates(message, rating)


@pytest.mark.usefixtures("telegram_settings")
def test_a_telegram_tap_with_a_malformed_query_id_still_rates() -> None:
    from chalicelib.channels import telegram

    message = only_message(telegram.parse(json_request("/webhooks/telegram", telegram_tap("csat:3", "not an id!"))))
    assert message.reply_token is None and rates(message, 3)


def test_telegram_lets_the_next_send_answer_a_fresh_tap_only() -> None:
    from chalicelib.channels import telegram

    rules = telegram.RULES[Channel.TELEGRAM.value]
    assert rules.reply_token_ttl is not None and timedelta(seconds=5) <= rules.reply_token_ttl <= timedelta(seconds=30)


class FakeBotApi:
    """Stands in for _Api.call: what the hub asked of Telegram, and Telegram's answers."""

    def __init__(self, refuse_answer: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.refuse_answer = refuse_answer

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        from chalicelib.domain.replies import ProviderRejected

        self.calls.append((method, params))
        if method == "answerCallbackQuery":
            if self.refuse_answer:
                too_old = "Bad Request: query is too old and response timeout expired or query ID is invalid"
                raise ProviderRejected("telegram", "400", too_old, 400)
            return {}
        return {"message_id": 7, "chat": {"id": params["chat_id"], "type": "private"}}


@pytest.mark.parametrize("refused", [False, True])
def test_a_telegram_send_with_the_query_id_answers_the_tap_first(
    monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    from chalicelib.channels import telegram
    from chalicelib.channels.base import Outgoing

    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:ABC-DEF")
    fake = FakeBotApi(refuse_answer=refused)
    monkeypatch.setattr(telegram._Api, "call", lambda _api, method, params: fake.call(method, params))
    outgoing = Outgoing(
        channel="telegram",
        recipient="123456789",
        body="Thank you!",
        hub_message_id="msg_1",
        reply_token="530326581292418513",
    )
    sent = telegram.send(outgoing)
    assert [method for method, _ in fake.calls] == ["answerCallbackQuery", "sendMessage"]
    assert fake.calls[0][1] == {"callback_query_id": "530326581292418513"}, "no notification text: only the spinner"
    assert sent.provider_message_id == "123456789:7", "a refused answer never stops the message"
    fake.calls.clear()
    telegram.send(Outgoing(channel="telegram", recipient="123456789", body="Later", hub_message_id="msg_2"))
    assert [method for method, _ in fake.calls] == ["sendMessage"], "no tap, nothing to answer"


# --- Web chat ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("language", "rating"), [(None, 5), ("es", 4), ("fr", 1), ("de", 2), ("pt-BR", 3), ("tr", 5)])
def test_a_web_chat_button_sends_its_label_which_rates(language: str | None, rating: int) -> None:
    from chalicelib.channels import webchat

    [label] = [label for choice_id, label in choices(CONFIG, language) if choice_id == f"csat:{rating}"]
    session = webchat.Session(
        visitor=webchat.new_visitor(), customer_id="cus_1", conversation_id="con_1", issued_at=0, expires_at=2**40
    )
    message = webchat.inbound_message(session, label, "tap-1", NOW)
    assert message.channel is Channel.WEBCHAT and message.body == label and rates(message, rating)


# --- SMS (Twilio) -----------------------------------------------------------------------------------


def parse_sms(body: str) -> InboundMessage:
    from urllib.parse import parse_qsl

    from chalicelib.channels import twilio

    fields = dict(parse_qsl((EVENTS / "twilio" / "inbound_sms.form").read_text().strip()))
    fields["Body"] = body
    form = urlencode(fields).encode()
    request = WebhookRequest(
        method="POST",
        path="/webhooks/twilio/messaging",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body=form,
    )
    return only_message(twilio.parse(request))


@pytest.mark.parametrize(
    ("body", "rating"),
    [
        ("5", 5),
        (" 4 ", 4),
        ("3.", 3),
        ("2!", 2),
        ("\uff15", 5),  # a full-width digit from a Japanese or Chinese keyboard
        ("4/5", 4),
        ("5 / 5", 5),
        ("5 stars", 5),
        ("1 star", 1),
        ("5 estrellas", 5),
        ("4 étoiles", 4),
        ("3 Sterne", 3),
        ("5 estrelas", 5),
        ("five", 5),
        ("Five!", 5),
        ("two", 2),
        ("cinco", 5),
        ("trois", 3),
        ("fünf", 5),
        ("dois", 2),
        ("4 Good", 4),
        ("5 excelente", 5),
        ("1 Sehr schlecht", 1),
        ("⭐⭐⭐", 3),
        ("⭐\ufe0f⭐\ufe0f⭐\ufe0f⭐\ufe0f", 4),  # stars as phones send them, with the emoji selector
        ("csat:2", 2),
    ],
)
def test_what_an_sms_may_answer(body: str, rating: int) -> None:
    message = parse_sms(body)
    assert message.channel is Channel.SMS and rating_in(message.body, CONFIG) == rating
    assert rates(message, rating)


@pytest.mark.parametrize(
    "body",
    ["6", "0", "-1", "10", "10/10", "4.5", "6 stars", "0 stars", "six", "zero", "um", "good", "ok", "excellent",
     "5 days late!", "1 more thing", "4-5", "3 or 4", "csat:6", "csat:"],
)  # fmt: skip
def test_what_an_sms_answer_is_not(body: str) -> None:
    message = parse_sms(body)
    assert rating_in(message.body, CONFIG) is None
    survey = open_survey("sms")
    assert answer_of(survey, message.body, message.provider_message_id, NOW, CONFIG) is None, "an ordinary message"
