"""Handoff links: invite on one channel, continue on another, one customer and one thread."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from chalicelib.domain.identity import email_identity, phone_identity
from chalicelib.domain.messages import Channel, InboundMessage
from local.sandbox import ProviderSandbox
from tests.conftest import Hub
from tests.integration.test_agent_replies import AGENT
from tests.integration.test_ingest import sms


def created_link(
    conversation_id: str, target: Any, agent_id: str | None = AGENT, via: str | None = None, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST /v1/conversations/{id}/links as the route calls it: (status, body)."""
    from chalicelib.http import links

    body: dict[str, Any] = {"target": target.value if hasattr(target, "value") else target}
    if agent_id is not None:
        body["agent_id"] = agent_id
    if via is not None:
        body["via"] = via
    outcome = links.create_link(conversation_id, body, key)
    return outcome.status_code, outcome.body


def email_from(address: str, body: str, message_id: str) -> InboundMessage:
    return InboundMessage(
        provider="sendgrid",
        provider_message_id=message_id,
        channel=Channel.EMAIL,
        sender=email_identity(address),
        sender_address=address,
        recipient_address="support@hub.example.com",
        body=body,
        subject="Continuing",
    )


def texts_sent(sandbox: ProviderSandbox) -> list[dict[str, Any]]:
    return [r["request"] for r in sandbox.records() if r["provider"] == "twilio"]


def test_an_email_link_binds_the_address_and_the_thread_continues(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    from chalicelib.domain.links import LinkTarget
    from chalicelib.services import customers, link_redemption
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMl1", body="I need to send you a long document"))
    status, created = created_link(first.conversation_id, LinkTarget.EMAIL)

    assert status == 201, created
    code = created["code"]
    [invitation] = texts_sent(sandbox)
    assert code in invitation["Body"] and invitation["To"] == "+15017122661"

    joined = ingest(email_from("Ada <ada@example.com>", f"Here it is. {code}", "m1@mail.example.com"))

    assert joined.customer_id == first.customer_id and joined.notice is None
    messages, _ = customers.list_messages(first.conversation_id, 50, None)
    assert [m.direction.value for m in messages] == ["inbound", "outbound", "event", "inbound"]
    assert "continued on email" in messages[2].body
    assert customers.find_customer(email="ADA@example.com").id == first.customer_id
    history = link_redemption.identity_history(first.customer_id)
    assert history[0]["identity"] == {"kind": "email", "value": "ada@example.com"}
    assert history[0]["linked_by"] == AGENT

    retry = ingest(email_from("ada@example.com", f"Here it is. {code}", "m1@mail.example.com"))
    assert retry.duplicate and retry.notice is None


def test_a_reused_expired_or_unknown_code_is_refused_and_binds_nothing(
    hub_with_providers: Hub, sandbox: ProviderSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chalicelib.domain.links import LinkTarget
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMl2", body="hi"))
    _, created = created_link(first.conversation_id, LinkTarget.SMS)
    other_phone = "+15017129999"
    used = ingest(sms("SMl3", sender=other_phone, body=created["code"]))
    assert used.customer_id == first.customer_id

    stranger = ingest(sms("SMl4", sender="+15017128888", body=f"trying {created['code']}"))
    assert stranger.customer_id != first.customer_id
    assert stranger.notice and "already used" in stranger.notice
    unknown = ingest(sms("SMl5", sender="+15017127777", body="LINK-ZZZZZZ please"))
    assert unknown.notice and "not valid" in unknown.notice

    monkeypatch.setenv("LINK_TTL_HOURS", "0")
    _, expiring = created_link(first.conversation_id, LinkTarget.SMS)
    late = ingest(sms("SMl6", sender="+15017126666", body=expiring["code"]))
    assert late.notice and "expired" in late.notice
    assert customers.find_customer(phone="+15017126666").id != first.customer_id


def test_a_webchat_link_token_is_signed_single_use_and_tamper_proof(hub_with_providers: Hub) -> None:
    from chalicelib.domain.identity import Identity, IdentityKind
    from chalicelib.domain.links import LinkRefused, LinkTarget
    from chalicelib.services import customers, link_redemption
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMl7", body="hi"))
    _, created = created_link(first.conversation_id, LinkTarget.WEBCHAT)
    token = parse_qs(urlparse(created["url"]).query)["link"][0]
    visitor = Identity(kind=IdentityKind.WEBCHAT, value="visitor-1")

    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(LinkRefused):
        link_redemption.redeem_token(tampered, visitor)
    forged_payload = token.split(".")
    forged_payload[1] = forged_payload[1][::-1]
    with pytest.raises(LinkRefused):
        link_redemption.redeem_token(".".join(forged_payload), visitor)

    bound = link_redemption.redeem_token(token, visitor)
    assert bound.customer_id == first.customer_id
    with pytest.raises(LinkRefused, match="already used"):
        link_redemption.redeem_token(token, Identity(kind=IdentityKind.WEBCHAT, value="visitor-2"))
    assert customers.get_customer(first.customer_id).identities[-1] == visitor


def test_link_codes_are_hard_to_guess_and_easy_to_read() -> None:
    from chalicelib.domain.links import CODE_ALPHABET, find_code, new_code

    codes = {new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert not set("01ILO") & set(CODE_ALPHABET)
    assert find_code("hi! my code is link-7kq4mz.") == "7KQ4MZ"
    assert find_code("LINK-7KQ4M") is None
    assert phone_identity("+15017122661") != email_identity("a@b.co")
    assert timedelta(hours=24)


def test_a_refused_code_by_email_is_answered_by_email(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    from chalicelib.services import webhook_intake

    message = email_from("eve@example.com", "my code is LINK-ZZZZZZ", "bad@mail.example.com")
    outcome = webhook_intake.process([message])
    [(_, _, notice)] = outcome.notices
    assert "not valid" in notice

    [mail] = [r["request"] for r in sandbox.records() if r["provider"] == "sendgrid"]
    assert mail["personalizations"][0]["to"][0]["email"] == "eve@example.com"
    assert "not valid" in mail["content"][0]["value"]


def test_an_automation_sends_a_link_without_an_agent(hub_with_providers: Hub, sandbox: ProviderSandbox) -> None:
    """The defect: a link request without `agent_id` was refused; bots and automations send links too."""
    from chalicelib.domain.links import LinkTarget
    from chalicelib.services import customers, link_redemption
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMauto-1", body="can we continue by email?"))

    status, created = created_link(first.conversation_id, LinkTarget.EMAIL, agent_id=None)

    assert status == 201, created
    assert created["invitation"]["agent_id"] is None
    [invitation] = texts_sent(sandbox)
    assert created["code"] in invitation["Body"]
    ingest(email_from("ada@example.com", f"here {created['code']}", "auto@mail.example.com"))
    assert customers.find_customer(email="ada@example.com").id == first.customer_id
    assert link_redemption.identity_history(first.customer_id)[0]["linked_by"] == "api"
    # An agent named must exist
    status, refused = created_link(first.conversation_id, LinkTarget.EMAIL, agent_id="nobody")
    assert (status, refused["error"]["code"]) == (404, "not_found")


def test_a_link_request_with_an_idempotency_key_sends_one_invitation(
    hub_with_providers: Hub, sandbox: ProviderSandbox
) -> None:
    from chalicelib.domain.links import LinkTarget
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SMkey-1", body="hi"))

    status, created = created_link(first.conversation_id, LinkTarget.EMAIL, key="link-key-1")
    again_status, again = created_link(first.conversation_id, LinkTarget.EMAIL, key="link-key-1")
    other_status, other = created_link(first.conversation_id, LinkTarget.SMS, key="link-key-1")

    assert (status, again_status) == (201, 201) and again == created
    assert len(texts_sent(sandbox)) == 1, "a retried request sends the invitation once"
    assert (other_status, other["error"]["code"]) == (422, "idempotency_key_reused")
