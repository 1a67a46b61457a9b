"""A web chat customer who closed the tab still gets the agent's answer, on a channel they allow."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from chalicelib.domain.identity import Identity, IdentityKind
from chalicelib.domain.messages import Channel, InboundMessage
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_agent_replies import AGENT

PHONE = "+15017125555"


def webchat_customer(visitor: str) -> tuple[str, str]:
    """A visitor who wrote on web chat and whose phone number the business added."""
    from chalicelib.api.models import CustomerPatch
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    identity = Identity(kind=IdentityKind.WEBCHAT, value=visitor)
    result = ingest(
        InboundMessage(
            provider="webchat",
            provider_message_id=f"{visitor}:1",
            channel=Channel.WEBCHAT,
            sender=identity,
            sender_address=visitor,
            recipient_address="webchat",
            body="Is my order shipped?",
        )
    )
    customers.patch_customer(result.customer_id, CustomerPatch(phone=PHONE))
    return result.customer_id, result.conversation_id


def texts_to(sandbox: ProviderSandbox, number: str) -> list[str]:
    return [
        r["request"]["Body"] for r in sandbox.records() if r["provider"] == "twilio" and r["request"]["To"] == number
    ]


def test_a_reply_to_a_visitor_who_left_also_goes_out_by_sms_with_a_link_back(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    from chalicelib.http.replies import send_reply
    from chalicelib.services import link_redemption

    customer_id, conversation_id = webchat_customer("visitor-gone")

    outcome = send_reply(conversation_id, {"agent_id": AGENT, "body": "Yes, it ships today."}, "r-gone")
    assert hub_with_providers.run_timers() == 1  # the timer worker decides whether the visitor left

    assert outcome.status_code == 201 and outcome.body["channel"] == "webchat"
    [text] = texts_to(sandbox, PHONE)
    assert "Yes, it ships today." in text and "Grace Hopper" in text
    token = parse_qs(urlparse(text.split("here: ")[1]).query)["link"][0]
    returning = Identity(kind=IdentityKind.WEBCHAT, value="visitor-on-phone")
    assert link_redemption.redeem_token(token, returning).customer_id == customer_id

    send_reply(conversation_id, {"agent_id": AGENT, "body": "Yes, it ships today."}, "r-gone")
    hub_with_providers.run_timers()
    assert len(texts_to(sandbox, PHONE)) == 1, "a retried reply notifies once"


def test_a_visitor_still_on_the_page_is_not_notified_elsewhere(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    from chalicelib.http.replies import send_reply
    from chalicelib.services import webchat

    _, conversation_id = webchat_customer("visitor-here")
    webchat.touch(conversation_id)

    assert send_reply(conversation_id, {"agent_id": AGENT, "body": "On it"}, "r-here").status_code == 201
    assert hub_with_providers.run_timers() == 1
    assert texts_to(sandbox, PHONE) == []


def test_a_visitor_who_opted_out_of_sms_is_not_texted(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.domain.messages import utcnow
    from chalicelib.http.replies import send_reply
    from chalicelib.services import consent

    customer_id, conversation_id = webchat_customer("visitor-stopped")
    consent.set_consent(customer_id, Channel.SMS, opted_out=True, at=utcnow())
    consent.set_consent(customer_id, Channel.WHATSAPP, opted_out=True, at=utcnow())

    assert send_reply(conversation_id, {"agent_id": AGENT, "body": "Shipped"}, "r-stopped").status_code == 201
    assert hub_with_providers.run_timers() == 1
    assert texts_to(sandbox, PHONE) == []
