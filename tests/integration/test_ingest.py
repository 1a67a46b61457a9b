"""Ingest against the AWS emulator over HTTP: one customer per identity, one thread, no duplicates."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from chalicelib.domain.identity import email_identity, phone_identity
from chalicelib.domain.messages import Channel, InboundMessage, Media
from tests.conftest import Hub


def sms(sid: str, sender: str = "+15017122661", body: str = "hello", **extra: Any) -> InboundMessage:
    channel = Channel.WHATSAPP if sender.startswith("whatsapp:") else Channel.SMS
    return InboundMessage(
        provider="twilio",
        provider_message_id=sid,
        channel=channel,
        sender=phone_identity(sender),
        sender_address=sender,
        recipient_address="+14155238886",
        body=body,
        **extra,
    )


def test_first_message_creates_customer_thread_and_routing_task(hub: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    result = ingest(sms("SM100", media=[Media(url="https://api.twilio.com/m/1", content_type="image/jpeg")]))

    assert result.new_customer and not result.duplicate
    customer = customers.find_customer(phone="+1 501 712 2661")
    assert customer is not None and customer.id == result.customer_id
    messages, cursor = customers.list_messages(customer.conversation_id, 50, None)
    assert [m.provider_message_id for m in messages] == ["SM100"]
    assert messages[0].media[0].content_type == "image/jpeg"
    assert cursor is None
    [task] = hub.routing_messages()
    body = json.loads(task["Body"])
    assert body["message_id"] == result.message_id
    assert task["Attributes"]["MessageGroupId"] == result.customer_id
    assert task["Attributes"]["MessageDeduplicationId"] == "twilio:SM100"


def test_whatsapp_sms_and_tel_forms_are_one_customer_and_one_thread(hub: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SM1", "whatsapp:+15017122661", "on whatsapp", profile_name="Ada"))
    second = ingest(sms("SM2", "+15017122661", "on sms"))
    third = ingest(sms("SM3", "tel:+1-501-712-2661", "tel form"))

    assert first.customer_id == second.customer_id == third.customer_id
    conversation = customers.get_conversation(first.conversation_id)
    assert conversation.message_count == 3
    assert set(conversation.channels) == {Channel.SMS, Channel.WHATSAPP}
    messages, _ = customers.list_messages(first.conversation_id, 50, None)
    assert [m.body for m in messages] == ["on whatsapp", "on sms", "tel form"]
    assert customers.get_customer(first.customer_id).provider_names == {"whatsapp": "Ada"}


def test_provider_retry_stores_once_and_re_sends_the_same_task(hub: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    first = ingest(sms("SM7"))
    retry = ingest(sms("SM7"))

    assert retry.duplicate and retry.message_id == first.message_id
    messages, _ = customers.list_messages(first.conversation_id, 50, None)
    assert len(messages) == 1
    assert customers.get_conversation(first.conversation_id).message_count == 1
    # FIFO deduplication by provider message id keeps the re-sent task from being queued twice.
    assert len(hub.routing_messages()) == 1


def test_enqueue_failure_after_write_is_completed_by_the_retry(hub: Hub) -> None:
    from chalicelib import aws
    from chalicelib.services import customers
    from chalicelib.services.errors import Unavailable
    from chalicelib.services.ingest import ingest

    failures = {"left": 1}

    def fail_once(**_: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("injected: SQS unreachable")

    aws.client("sqs").meta.events.register("before-call.sqs.SendMessage", fail_once)

    with pytest.raises(Unavailable):
        ingest(sms("SM9"))
    stored = customers.find_customer(phone="+15017122661")
    assert stored is not None, "the message is stored before the hand-off fails"
    assert hub.routing_messages() == []

    retry = ingest(sms("SM9"))

    assert retry.duplicate
    messages, _ = customers.list_messages(stored.conversation_id, 50, None)
    assert len(messages) == 1
    [task] = hub.routing_messages()
    assert json.loads(task["Body"])["message_id"] == retry.message_id


def test_racing_first_messages_from_a_new_number_make_one_customer(hub: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    racers = 8
    barrier = threading.Barrier(racers)
    results: list[Any] = []
    errors: list[BaseException] = []

    def send(index: int) -> None:
        try:
            barrier.wait()
            sender = "whatsapp:+15017120000" if index % 2 else "+15017120000"
            results.append(ingest(sms(f"SMrace{index}", sender, f"message {index}")))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert len({result.customer_id for result in results}) == 1
    assert sum(result.new_customer for result in results) == 1
    customer = customers.find_customer(phone="+15017120000")
    assert customer is not None and customer.id == results[0].customer_id
    messages, _ = customers.list_messages(customer.conversation_id, 50, None)
    assert sorted(m.provider_message_id for m in messages) == sorted(f"SMrace{i}" for i in range(racers))
    assert customers.get_conversation(customer.conversation_id).message_count == racers
    # Exactly the winner's customer exists: no orphan profiles from the losing transactions.
    profiles = hub.client("dynamodb").scan(
        TableName=hub.table_name,
        FilterExpression="#t = :customer",
        ExpressionAttributeNames={"#t": "type"},
        ExpressionAttributeValues={":customer": {"S": "customer"}},
    )["Items"]
    assert len(profiles) == 1


def test_thread_is_ordered_by_arrival_and_paginates(hub: Hub) -> None:
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    for index in range(7):
        ingest(sms(f"SMp{index}", body=f"m{index}"))
    customer = customers.find_customer(phone="+15017122661")
    assert customer is not None

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = customers.list_messages(customer.conversation_id, 3, cursor)
        seen.extend(m.body for m in page)
        pages += 1
        if cursor is None:
            break
    assert seen == [f"m{i}" for i in range(7)]
    assert pages == 3


def test_email_identity_is_separate_until_linked_then_joins(hub: Hub) -> None:
    from chalicelib.api.models import CustomerPatch
    from chalicelib.services import customers
    from chalicelib.services.errors import Conflict
    from chalicelib.services.ingest import ingest

    phone_customer = ingest(sms("SMx"))
    email_message = InboundMessage(
        provider="sendgrid",
        provider_message_id="abc@mail.example.com",
        channel=Channel.EMAIL,
        sender=email_identity("Ada <Ada@Example.com>"),
        sender_address="ada@example.com",
        recipient_address="support@hub.example.com",
        body="by email",
        profile_name="Ada",
    )
    email_customer = ingest(email_message)
    assert email_customer.customer_id != phone_customer.customer_id

    with pytest.raises(Conflict) as conflict:
        customers.patch_customer(phone_customer.customer_id, CustomerPatch(email="ADA@example.com"))
    assert email_customer.customer_id in str(conflict.value)

    patched = customers.patch_customer(
        phone_customer.customer_id, CustomerPatch(email="ada.work@example.com", name="Ada Lovelace")
    )
    assert patched.name == "Ada Lovelace" and patched.email == "ada.work@example.com"
    follow_up = email_message.model_copy(
        update={
            "provider_message_id": "def@mail.example.com",
            "sender": email_identity("ada.work@example.com"),
            "profile_name": "A. L.",
        }
    )
    joined = ingest(follow_up)
    assert joined.customer_id == phone_customer.customer_id
    after = customers.get_customer(phone_customer.customer_id)
    assert after.name == "Ada Lovelace", "a provider's display name never overwrites the business's"
    assert after.provider_names["email"] == "A. L."


def test_attributes_merge_and_concurrent_patches_lose_nothing(hub: Hub) -> None:
    from chalicelib.api.models import CustomerPatch
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    customer_id = ingest(sms("SMa")).customer_id
    customers.patch_customer(customer_id, CustomerPatch(attributes={"tier": "gold", "lang": "tr"}))

    def patch(index: int) -> None:
        customers.patch_customer(customer_id, CustomerPatch(attributes={f"k{index}": index}))

    threads = [threading.Thread(target=patch, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    customers.patch_customer(customer_id, CustomerPatch(attributes={"lang": None}))

    attributes = customers.get_customer(customer_id).attributes
    assert attributes == {"tier": "gold", "k0": 0, "k1": 1, "k2": 2, "k3": 3}


def test_a_profile_change_is_announced_to_the_crm(hub: Hub) -> None:
    from chalicelib.api.models import CustomerPatch
    from chalicelib.services import customers
    from chalicelib.services.ingest import ingest

    customer_id = ingest(sms("SMann")).customer_id
    customers.patch_customer(customer_id, CustomerPatch(name="Ada"))

    sqs = hub.client("sqs")
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=hub.resources["CRM_EVENTS_QUEUE_URL"], MaxNumberOfMessages=10).get(
            "Messages", []
        )
    ]
    updates = [b["event"] for b in bodies if b["event"]["type"] == "customer.updated"]
    assert len(updates) == 1
    assert updates[0]["data"]["customer"]["name"] == "Ada"
