"""Satisfaction surveys through the real workers, the timer queue and the provider sandbox: asked
after an agent resolves a cycle, answered by SMS (a rating that may change, then a comment) or on
the email page; credited to the agent of the survey; counted in the analytics summary; never
asked when a rule says no; a message that is not a rating reopens the conversation as usual."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.routing_support import Workers, configure, make_agent
from tests.integration.test_agent_replies import hub_with_providers, sandbox
from tests.integration.test_ingest import sms
from tests.integration.test_meta_channel import meta_api

__all__ = ["hub_with_providers", "meta_api", "sandbox"]  # fixtures

CUSTOMER = "+15017127701"


def conversation(conversation_id: str) -> Any:
    from chalicelib.services import customers

    return customers.get_conversation(conversation_id)


def texts_to(sandbox: ProviderSandbox, number: str) -> list[str]:
    return [
        r["request"]["Body"] for r in sandbox.records() if r["provider"] == "twilio" and r["request"]["To"] == number
    ]


@pytest.fixture
def workers(hub_with_providers: Hub, monkeypatch: pytest.MonkeyPatch) -> Workers:
    configure(monkeypatch, surveys={"delay_seconds": 0, "cooldown_hours": 24}, offer_timeout_seconds=900)
    make_agent("ada")
    return Workers(hub_with_providers)


def handled_cycle(workers: Workers, sid: str, number: str = CUSTOMER, agent: str = "ada") -> str:
    """A customer writes, the agent accepts, answers and resolves."""
    from chalicelib.http.replies import send_reply
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    first = ingest(sms(sid, sender=number, body="my parcel is late"))
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)
    routing.accept_offer(conversation(first.conversation_id).offer_id)
    assert send_reply(first.conversation_id, {"agent_id": agent, "body": "It ships today."}).status_code == 201
    routing.resolve(first.conversation_id)
    return first.conversation_id


def csat(**query: Any) -> dict[str, Any]:
    from chalicelib.services import analytics

    now = datetime.now(UTC)
    answer = analytics.summary(
        (now - timedelta(hours=1)).isoformat(),
        (now + timedelta(hours=1)).isoformat(),
        "UTC",
        query.get("group_by"),
        None,
    )
    return answer


def test_an_sms_survey_is_rated_rerated_commented_and_counted(
    workers: Workers, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.services import customers, events
    from chalicelib.services.ingest import ingest

    emitted: list[tuple[str, dict[str, Any], str]] = []
    real_emit = events.emit_many

    def capture(batch: list[tuple[str, dict[str, Any], str]], *rest: Any, **options: Any) -> Any:
        # Whatever else the caller passes (routing hands over the analytics heads it read) goes on.
        emitted.extend(batch)
        return real_emit(batch, *rest, **options)

    monkeypatch.setattr(events, "emit_many", capture)

    conversation_id = handled_cycle(workers, "SMsv-1")
    workers.drain(until=lambda: conversation(conversation_id).survey is not None, timeout=10)
    workers.drain()
    question = texts_to(sandbox, CUSTOMER)[-1]
    assert "from 1 (very poor) to 5 (excellent)" in question
    survey = conversation(conversation_id).survey
    assert survey.agent_ids == ["ada"] and survey.status == "asked"

    ingest(sms("SMsv-2", sender=CUSTOMER, body="2"))
    workers.drain()
    ingest(sms("SMsv-3", sender=CUSTOMER, body="5"))  # changed their mind before commenting
    workers.drain()
    ingest(sms("SMsv-4", sender=CUSTOMER, body="Quick and friendly, thanks"))
    workers.drain()

    after = conversation(conversation_id)
    assert (after.survey.rating, after.survey.comment, after.survey.status) == (5, "Quick and friendly, thanks", "done")
    assert after.status == "resolved", "the answers reopened nothing"
    texts = texts_to(sandbox, CUSTOMER)
    assert any(text.startswith("Thank you! If you like") for text in texts), "thanked after the first rating"
    submitted = [(data["survey"], key) for kind, data, key in emitted if kind == "csat.submitted"]
    assert [(survey["rating"], survey["comment"]) for survey, _ in submitted] == [
        (2, None),
        (5, None),
        (5, "Quick and friendly, thanks"),
    ]
    assert len({key for _, key in submitted}) == 3, "a changed rating and the comment are new events"
    assert all(survey["agent_ids"] == ["ada"] and survey["cycle_id"] for survey, _ in submitted)
    [requested] = [data for kind, data, _ in emitted if kind == "csat.requested"]
    assert requested["survey"]["rating"] is None and requested["customer"]["id"] == survey.customer_id
    messages, _ = customers.list_messages(conversation_id, 200, None)
    bodies = [message.body for message in messages]
    assert question in bodies and {"2", "5", "Quick and friendly, thanks"} <= set(bodies), "all in the thread"
    assert texts[-1] == "Thank you for your feedback."
    total = csat()["total"]
    assert total["csat"]["sent"] == 1 and total["csat"]["responses"] == 1
    assert total["csat"]["distribution"] == {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1}
    assert total["cycles"] == 1, "a rating and a comment are no new cycle"
    [agent] = csat(group_by="agent")["groups"]
    assert agent["agent"] == "ada" and agent["metrics"]["csat"]["mean"] == 5.0

    from chalicelib.services import analytics

    window = {"from": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}
    [row] = analytics.cycles(window)["cycles"]
    assert row["csat_rating"] == 5 and row["csat_comment"] == "Quick and friendly, thanks"


def test_a_message_that_is_no_rating_reopens_the_conversation(workers: Workers, sandbox: ProviderSandbox) -> None:
    from chalicelib.services.ingest import ingest

    conversation_id = handled_cycle(workers, "SMsv-10")
    workers.drain(until=lambda: conversation(conversation_id).survey is not None, timeout=10)
    ingest(sms("SMsv-11", sender=CUSTOMER, body="it still has not arrived"))
    workers.drain(until=lambda: conversation(conversation_id).status != "resolved")
    assert conversation(conversation_id).status in ("waiting", "assigned")
    assert conversation(conversation_id).survey.rating is None
    assert csat()["total"]["cycles"] == 2


def test_the_rating_is_credited_to_the_agent_of_the_survey(workers: Workers, sandbox: ProviderSandbox) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    conversation_id = handled_cycle(workers, "SMsv-20")
    workers.drain(until=lambda: conversation(conversation_id).survey is not None, timeout=10)
    make_agent("bob")
    routing.set_agent_status("ada", routing.AgentStatus.OFFLINE)  # ada leaves before the rating comes in
    ingest(sms("SMsv-21", sender=CUSTOMER, body="4"))
    workers.drain()
    groups = {group["agent"]: group["metrics"]["csat"] for group in csat(group_by="agent")["groups"]}
    assert groups["ada"]["distribution"]["4"] == 1 and "bob" not in groups


@pytest.mark.parametrize(
    ("surveys", "why"),
    [
        ({"queues_off": ["general"]}, "queue off"),
        ({"min_customer_messages": 3}, "too short"),
        ({"enabled": False}, "off"),
    ],
)
def test_no_survey_when_a_rule_says_no(
    hub_with_providers: Hub,
    sandbox: ProviderSandbox,
    monkeypatch: pytest.MonkeyPatch,
    surveys: dict[str, Any],
    why: str,
) -> None:
    configure(monkeypatch, surveys={"delay_seconds": 0, **surveys}, offer_timeout_seconds=900)
    make_agent("ada")
    workers = Workers(hub_with_providers)
    conversation_id = handled_cycle(workers, f"SMsv-no-{why}")
    workers.drain()
    assert conversation(conversation_id).survey is None, why
    assert not any("from 1 (very poor)" in text for text in texts_to(sandbox, CUSTOMER))


def test_a_bot_alone_and_the_cooldown_get_no_survey(workers: Workers, sandbox: ProviderSandbox) -> None:
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    unhandled = ingest(sms("SMsv-30", sender="+15017127702", body="hello"))
    workers.drain()
    routing.resolve(unhandled.conversation_id)  # nobody answered: no agent to rate
    first = handled_cycle(workers, "SMsv-31")
    workers.drain(until=lambda: conversation(first).survey is not None, timeout=10)
    ingest(sms("SMsv-32", sender=CUSTOMER, body="one more question"))  # a second cycle, same day
    workers.drain(until=lambda: conversation(first).offer_id is not None)
    routing.accept_offer(conversation(first).offer_id)
    routing.resolve(first)
    workers.drain()
    assert conversation(unhandled.conversation_id).survey is None
    questions = [text for text in texts_to(sandbox, CUSTOMER) if "from 1 (very poor)" in text]
    assert len(questions) == 1, "asked once within the cooldown"


def test_an_email_survey_is_answered_once_on_its_signed_page(workers: Workers, sandbox: ProviderSandbox) -> None:
    from chalice.test import Client

    from app import app
    from chalicelib.http.replies import send_reply
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest
    from tests.integration.test_agent_replies import email

    first = ingest(email("<sv1@mail.example.com>", "Order 42", [], "Where is my order?"))
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)
    routing.accept_offer(conversation(first.conversation_id).offer_id)
    assert send_reply(first.conversation_id, {"agent_id": "ada", "body": "It ships today."}).status_code == 201
    routing.resolve(first.conversation_id)
    workers.drain(until=lambda: conversation(first.conversation_id).survey is not None, timeout=10)
    workers.drain()
    sent = [r["request"] for r in sandbox.records() if r["provider"] == "sendgrid"][-1]
    text = next(part["value"] for part in sent["content"] if part["type"] == "text/plain")
    link = next(word for word in text.split() if "/csat/" in word)
    path = "/csat/" + link.rsplit("/csat/", 1)[1]

    with Client(app) as client:
        page = client.http.get(path)
        assert page.status_code == 200 and b'name="rating"' in page.body
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        forged = client.http.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
        assert forged.status_code == 404
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        bad = client.http.post(path, body=b"rating=9", headers=form)
        assert bad.status_code == 400
        done = client.http.post(path, body=b"rating=3&comment=fine+but+slow", headers=form)
        assert done.status_code == 200 and b"recorded" in done.body
        again = client.http.post(path, body=b"rating=5", headers=form)
        assert again.status_code == 409, "single use"

    survey = conversation(first.conversation_id).survey
    assert (survey.rating, survey.comment, survey.channel) == (3, "fine but slow", "email")
    assert csat()["total"]["csat"]["distribution"]["3"] == 1


# --- WhatsApp through Meta's Cloud API: a list inside the window, the template outside it ------------


@pytest.fixture
def meta_workers(
    hub_with_providers: Hub, sandbox: ProviderSandbox, meta_api: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workers]:
    from chalicelib.config import settings
    from tests.integration.test_meta_channel import configure_meta

    configure_meta(monkeypatch, sandbox.url_for("meta"))
    configure(
        monkeypatch,
        surveys={"delay_seconds": 0, "whatsapp_template": "csat_request"},
        offer_timeout_seconds=900,
    )
    make_agent("ada")
    yield Workers(hub_with_providers)
    settings.cache_clear()


def whatsapp_cycle(workers: Workers, client: Any, wamid: str) -> str:
    from chalicelib.http.replies import send_reply
    from chalicelib.services import customers, routing
    from tests.integration.test_meta_channel import WA_ID, deliver, whatsapp_text

    assert deliver(client, whatsapp_text(wamid, "my order is missing")).status_code == 200
    conversation_id = customers.find_customer(channel="whatsapp", address="+" + WA_ID).conversation_id
    workers.drain(until=lambda: conversation(conversation_id).offer_id is not None)
    routing.accept_offer(conversation(conversation_id).offer_id)
    assert send_reply(conversation_id, {"agent_id": "ada", "body": "Found it, it ships today."}).status_code == 201
    routing.resolve(conversation_id)
    return conversation_id


def whatsapp_sends(sandbox: ProviderSandbox) -> list[dict[str, Any]]:
    return [r["request"] for r in sandbox.records() if r["provider"] == "meta" and r["channel"] == "whatsapp"]


def test_whatsapp_inside_the_window_gets_a_list_and_a_row_tap_rates(
    meta_workers: Workers, sandbox: ProviderSandbox
) -> None:
    from chalice.test import Client

    from app import app
    from tests.integration.test_meta_channel import WA_ID, deliver, whatsapp_value

    with Client(app) as client:
        conversation_id = whatsapp_cycle(meta_workers, client, "wamid.SURVEY-IN-1")
        meta_workers.drain(until=lambda: conversation(conversation_id).survey is not None, timeout=10)
        meta_workers.drain()
        question = whatsapp_sends(sandbox)[-1]
        assert question["type"] == "interactive" and question["interactive"]["type"] == "list"
        rows = question["interactive"]["action"]["sections"][0]["rows"]
        assert [row["id"] for row in rows] == ["csat:5", "csat:4", "csat:3", "csat:2", "csat:1"]

        tap = {
            "from": WA_ID,
            "id": "wamid.SURVEY-IN-2",
            "timestamp": str(int(datetime.now(UTC).timestamp())),
            "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": {"id": "csat:4", "title": rows[1]["title"]}},
            "context": {"from": "15550783881", "id": "wamid.question"},
        }
        payload = whatsapp_value(contacts=[{"profile": {"name": "Ada"}, "wa_id": WA_ID}], messages=[tap])
        assert deliver(client, payload).status_code == 200
        assert deliver(client, payload).status_code == 200, "Meta redelivered the webhook"
        meta_workers.drain()
    survey = conversation(conversation_id).survey
    assert (survey.rating, survey.status, survey.agent_ids, survey.channel) == (4, "rated", ["ada"], "whatsapp")
    assert conversation(conversation_id).status == "resolved"
    assert csat()["total"]["csat"]["distribution"]["4"] == 1


def test_whatsapp_outside_the_window_gets_the_approved_template(
    meta_workers: Workers, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalice.test import Client

    from app import app
    from chalicelib.services import outbound

    with Client(app) as client:
        conversation_id = whatsapp_cycle(meta_workers, client, "wamid.SURVEY-OUT-1")
        real = outbound.utcnow
        monkeypatch.setattr(outbound, "utcnow", lambda: real() + timedelta(hours=25))  # the window has closed
        meta_workers.drain(until=lambda: conversation(conversation_id).survey is not None, timeout=10)
        meta_workers.drain()
    question = whatsapp_sends(sandbox)[-1]
    assert question["type"] == "template" and question["template"]["name"] == "csat_request"
    assert conversation(conversation_id).survey.status == "asked"
    assert csat()["total"]["csat"]["sent"] == 1


# --- More rules and answers ------------------------------------------------------------------------------


def test_no_survey_on_a_channel_the_customer_opted_out_of(workers: Workers, sandbox: ProviderSandbox) -> None:
    from chalicelib.domain.messages import Channel
    from chalicelib.services import consent, customers

    conversation_id = handled_cycle(workers, "SMsv-40", number="+15017127703")
    customer = customers.find_customer(channel="sms", address="+15017127703")
    consent.set_consent(customer.id, Channel.SMS, opted_out=True, at=datetime.now(UTC))  # before the timer fires
    workers.drain()
    assert not any("from 1 (very poor)" in text for text in texts_to(sandbox, "+15017127703"))
    assert csat()["total"]["csat"]["sent"] == 0
    assert conversation(conversation_id).survey is None or conversation(conversation_id).survey.rating is None


def test_a_bot_resolved_cycle_gets_no_survey(
    workers: Workers, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.analytics import CycleState
    from chalicelib.domain.timers import SurveyDue
    from chalicelib.services import analytics, surveys
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMsv-50", sender="+15017127704", body="hello"))
    workers.drain()
    cycle = analytics.current_cycle(first.conversation_id)
    assert isinstance(cycle, CycleState)
    bot_cycle = cycle.model_copy(update={"resolved_at": datetime.now(UTC), "resolved_by": "bot"})
    monkeypatch.setattr(analytics, "current_cycle", lambda _conversation_id: bot_cycle)
    assert surveys.send_due(SurveyDue(conversation_id=first.conversation_id, cycle_id=cycle.cycle_id)) is None
    assert conversation(first.conversation_id).survey is None


def email_cycle(workers: Workers, message_id: str, agent: str = "ada") -> str:
    from chalicelib.http.replies import send_reply
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest
    from tests.integration.test_agent_replies import email

    first = ingest(email(message_id, "Order 42", [], "Where is my order?"))
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)
    routing.accept_offer(conversation(first.conversation_id).offer_id)
    assert send_reply(first.conversation_id, {"agent_id": agent, "body": "It ships today."}).status_code == 201
    routing.resolve(first.conversation_id)
    return first.conversation_id


def survey_path(sandbox: ProviderSandbox) -> str:
    sent = [r["request"] for r in sandbox.records() if r["provider"] == "sendgrid"][-1]
    text = next(part["value"] for part in sent["content"] if part["type"] == "text/plain")
    link = next(word for word in text.split() if "/csat/" in word)
    return "/csat/" + link.rsplit("/csat/", 1)[1]


def test_a_rating_after_the_conversation_was_reopened_and_reassigned_credits_the_survey_s_agent(
    workers: Workers, sandbox: ProviderSandbox
) -> None:
    from chalice.test import Client

    from app import app
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest
    from tests.integration.test_agent_replies import email

    conversation_id = email_cycle(workers, "<sv60@mail.example.com>")
    workers.drain(until=lambda: conversation(conversation_id).survey is not None, timeout=10)
    workers.drain()
    path = survey_path(sandbox)
    routing.set_agent_status("ada", routing.AgentStatus.OFFLINE)  # ada leaves; bob takes the next cycle
    make_agent("bob")
    ingest(email("<sv61@mail.example.com>", "Re: Order 42", [], "One more thing: can I change the address?"))
    workers.drain(until=lambda: conversation(conversation_id).offer_id is not None)
    routing.accept_offer(conversation(conversation_id).offer_id)
    assert conversation(conversation_id).assigned_agent_id == "bob"
    ingest(email("<sv62@mail.example.com>", "Re: Order 42", [], "5"))  # in the new cycle: a reply to bob
    workers.drain()
    assert conversation(conversation_id).survey.rating is None, "a digit in a new cycle answers the agent"

    with Client(app) as client:
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        assert client.http.post(path, body=b"rating=4&comment=ada+was+great", headers=form).status_code == 200
    survey = conversation(conversation_id).survey
    assert (survey.rating, survey.comment, survey.agent_ids) == (4, "ada was great", ["ada"])
    groups = {group["agent"]: group["metrics"]["csat"] for group in csat(group_by="agent")["groups"]}
    assert groups["ada"]["distribution"]["4"] == 1
    assert sum(groups.get("bob", {}).get("distribution", {}).values()) == 0


def test_an_expired_or_tampered_email_link_is_refused(workers: Workers) -> None:
    from chalice.test import Client

    from app import app
    from chalicelib.domain.surveys import Survey
    from chalicelib.services import surveys

    stale = Survey(
        id="srv_x",
        cycle_id="cyc_x",
        customer_id="cus_x",
        channel="email",
        sent_at=datetime.now(UTC) - timedelta(days=4),
        expires_at=datetime.now(UTC) - timedelta(days=1),
    )
    path = "/csat/" + surveys.page_link(stale, "con_x").rsplit("/csat/", 1)[1]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with Client(app) as client:
        expired = client.http.get(path)
        assert expired.status_code == 409 and b"expired" in expired.body
        assert client.http.post(path, body=b"rating=5", headers=form).status_code == 409
        encoded, signature = path.removeprefix("/csat/").split(".")
        for bad in (f"{encoded}x.{signature}", "nope", "a.b.c", "%00", "x" * 1000, f"{encoded}."):
            answer = client.http.get(f"/csat/{bad}")
            assert 400 <= answer.status_code < 500, bad
            assert client.http.post(f"/csat/{bad}", body=b"rating=5", headers=form).status_code < 500
        assert client.http.post(path, body=b"\xff\xfe", headers=form).status_code < 500


# --- The customer's language: the question, the buttons and the thanks speak it ------------------------


def speaks(customer_id: str, language: str) -> None:
    from chalicelib.api.models import CustomerPatch
    from chalicelib.services import customers

    customers.patch_customer(customer_id, CustomerPatch(attributes={"language": language}))


def test_a_spanish_speaking_customer_is_asked_and_thanked_in_spanish_by_sms(
    workers: Workers, sandbox: ProviderSandbox
) -> None:
    from chalicelib.http.replies import send_reply
    from chalicelib.services import routing
    from chalicelib.services.ingest import ingest

    number = "+15017127710"
    first = ingest(sms("SMsv-es-0", sender=number, body="mi pedido no ha llegado"))
    speaks(first.customer_id, "es-MX")
    workers.drain(until=lambda: conversation(first.conversation_id).offer_id is not None)
    routing.accept_offer(conversation(first.conversation_id).offer_id)
    assert send_reply(first.conversation_id, {"agent_id": "ada", "body": "Sale hoy."}).status_code == 201
    routing.resolve(first.conversation_id)
    workers.drain(until=lambda: conversation(first.conversation_id).survey is not None, timeout=10)
    workers.drain()
    assert texts_to(sandbox, number)[-1] == (
        "¿Qué tal lo hicimos? Responda con un número del 1 (muy mal) al 5 (excelente)."
    )
    assert conversation(first.conversation_id).survey.language == "es-mx"

    ingest(sms("SMsv-es-1", sender=number, body="cinco"))
    workers.drain()
    assert conversation(first.conversation_id).survey.rating == 5
    assert texts_to(sandbox, number)[-1].startswith("¡Gracias! Si quiere, cuéntenos en un mensaje")


def test_a_spanish_speaking_customer_gets_a_spanish_whatsapp_list(
    meta_workers: Workers, sandbox: ProviderSandbox
) -> None:
    from chalice.test import Client

    from app import app
    from chalicelib.http.replies import send_reply
    from chalicelib.services import customers, routing
    from tests.integration.test_meta_channel import WA_ID, deliver, whatsapp_text, whatsapp_value

    with Client(app) as client:
        assert deliver(client, whatsapp_text("wamid.SURVEY-ES-1", "mi pedido no llegó")).status_code == 200
        customer = customers.find_customer(channel="whatsapp", address="+" + WA_ID)
        speaks(customer.id, "es")
        conversation_id = customer.conversation_id
        meta_workers.drain(until=lambda: conversation(conversation_id).offer_id is not None)
        routing.accept_offer(conversation(conversation_id).offer_id)
        assert send_reply(conversation_id, {"agent_id": "ada", "body": "Sale hoy."}).status_code == 201
        routing.resolve(conversation_id)
        meta_workers.drain(until=lambda: conversation(conversation_id).survey is not None, timeout=10)
        meta_workers.drain()
        question = whatsapp_sends(sandbox)[-1]
        assert question["interactive"]["body"]["text"].startswith("¿Qué tal lo hicimos? Valórenos del 1")
        rows = question["interactive"]["action"]["sections"][0]["rows"]
        assert [row["title"] for row in rows] == ["5 Excelente", "4 Bien", "3 Regular", "2 Mal", "1 Muy mal"]

        tap = {
            "from": WA_ID,
            "id": "wamid.SURVEY-ES-2",
            "timestamp": str(int(datetime.now(UTC).timestamp())),
            "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": {"id": rows[2]["id"], "title": rows[2]["title"]}},
            "context": {"from": "15550783881", "id": "wamid.question"},
        }
        payload = whatsapp_value(contacts=[{"profile": {"name": "Ada"}, "wa_id": WA_ID}], messages=[tap])
        assert deliver(client, payload).status_code == 200
        meta_workers.drain()
    assert conversation(conversation_id).survey.rating == 3
    thanks = whatsapp_sends(sandbox)[-1]
    assert thanks["type"] == "text" and thanks["text"]["body"].startswith("¡Gracias!")


# --- Telegram: a tap on a rating button is answered (answerCallbackQuery), so its spinner stops --------

TELEGRAM_SECRET = "surveys_telegram-secret"
TELEGRAM_TOKEN = "7000000001:AAH-surveys_bot_token-xyz"
TELEGRAM_USER = 246813579


@pytest.fixture(scope="module")
def telegram_api(sandbox: ProviderSandbox) -> Any:
    from local.chat_sandbox.telegram import TelegramEmulator

    return sandbox.add_emulator(TelegramEmulator(TELEGRAM_TOKEN, username="AcmeHelpBot"))


@pytest.fixture
def telegram_workers(
    hub_with_providers: Hub, sandbox: ProviderSandbox, telegram_api: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workers]:
    from chalicelib.config import settings

    telegram_api.reset()
    for name, value in {
        "TELEGRAM_SECRET_TOKEN": TELEGRAM_SECRET,
        "TELEGRAM_BOT_TOKEN": TELEGRAM_TOKEN,
        "TELEGRAM_BOT_USERNAME": "AcmeHelpBot",
        "TELEGRAM_API_BASE_URL": sandbox.url_for("telegram"),
    }.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    configure(monkeypatch, surveys={"delay_seconds": 0}, offer_timeout_seconds=900)
    make_agent("ada", capacity={"telegram": 2})
    yield Workers(hub_with_providers)
    settings.cache_clear()


def telegram_post(update: dict[str, Any]) -> int:
    import json

    from chalice.test import Client

    from app import app

    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}
    with Client(app) as client:
        return client.http.post("/webhooks/telegram", headers=headers, body=json.dumps(update).encode()).status_code


def telegram_calls(sandbox: ProviderSandbox) -> list[dict[str, Any]]:
    return [record for record in sandbox.records() if record["provider"] == "telegram"]


def test_a_telegram_rating_tap_is_answered_before_the_thanks(
    telegram_workers: Workers, sandbox: ProviderSandbox, telegram_api: Any
) -> None:
    from chalicelib.http.replies import send_reply
    from chalicelib.services import customers, routing
    from local.chat_sandbox.telegram import callback_update, text_update

    assert telegram_post(text_update(810001, TELEGRAM_USER, "¿Dónde está mi pedido?")) == 200
    customer = customers.find_customer(channel="telegram", address=str(TELEGRAM_USER))
    speaks(customer.id, "es")
    conversation_id = customer.conversation_id
    telegram_workers.drain(until=lambda: conversation(conversation_id).offer_id is not None)
    routing.accept_offer(conversation(conversation_id).offer_id)
    assert send_reply(conversation_id, {"agent_id": "ada", "body": "Sale hoy."}).status_code == 201
    routing.resolve(conversation_id)
    telegram_workers.drain(until=lambda: conversation(conversation_id).survey is not None, timeout=10)
    telegram_workers.drain()
    [question] = [call for call in telegram_calls(sandbox) if "reply_markup" in call["request"]]
    assert question["request"]["text"].startswith("¿Qué tal lo hicimos?")
    buttons = [row[0] for row in question["request"]["reply_markup"]["inline_keyboard"]]
    assert [button["text"] for button in buttons][:2] == ["5 Excelente", "4 Bien"]

    tap = telegram_api.issue(callback_update(810002, TELEGRAM_USER, buttons[0]["callback_data"], query_id="9081726354"))
    assert telegram_post(tap) == 200
    assert telegram_post(tap) == 200, "Telegram redelivered the update"
    telegram_workers.drain()

    assert conversation(conversation_id).survey.rating == 5
    after = telegram_calls(sandbox)[telegram_calls(sandbox).index(question) + 1 :]
    assert [call["method"] for call in after] == ["answerCallbackQuery", "sendMessage"], "answered once, then thanked"
    assert after[0]["request"] == {"callback_query_id": "9081726354"} and after[0]["status"] == "answered"
    assert after[1]["request"]["text"].startswith("¡Gracias!")


def test_the_telegram_sandbox_checks_answer_callback_query(telegram_api: Any, sandbox: ProviderSandbox) -> None:
    import json
    import urllib.error
    import urllib.request

    from local.chat_sandbox.telegram import QUERY_TOO_OLD, callback_update

    def call(params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        url = f"{sandbox.url_for('telegram')}/bot{TELEGRAM_TOKEN}/answerCallbackQuery"
        body = json.dumps(params).encode()
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())

    telegram_api.reset()
    telegram_api.issue(callback_update(1, TELEGRAM_USER, "csat:4", query_id="111"))
    assert call({}) == (400, {"ok": False, "error_code": 400, "description": "Bad Request: QUERY_ID_INVALID"})
    assert call({"callback_query_id": "111", "text": "x" * 201})[1]["description"] == "Bad Request: MESSAGE_TOO_LONG"
    assert call({"callback_query_id": "999"})[1]["description"] == QUERY_TOO_OLD, "never issued"
    assert call({"callback_query_id": "111", "text": "Thanks!"}) == (200, {"ok": True, "result": True})
    assert call({"callback_query_id": "111"})[1]["description"] == QUERY_TOO_OLD, "answered already"
    telegram_api.callback_ttl = 0.0
    telegram_api.issue(callback_update(2, TELEGRAM_USER, "csat:4", query_id="222"))
    assert call({"callback_query_id": "222"})[0] == 400, "too old"
    telegram_api.callback_ttl = 15.0
