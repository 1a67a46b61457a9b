"""A phone number a channel vouches for joins the sender to that number's customer.

When a Telegram user shares their own contact, Telegram proves the number is theirs
(channels/telegram.py sets `InboundMessage.verified_phone` only then). Ingest calls `bind` before
the message is filed, so the message already lands in the right thread:

* The phone belongs to customer X: the sender's identity (the Telegram user) is bound to X, moved
  from the customer it belonged to if any, as a redeemed handoff link moves it. The customer who
  wrote by SMS and now writes on Telegram is one customer with one thread.
* The phone belongs to nobody, the sender is a known customer: the phone identity joins that
  customer (and becomes their phone number if they have none), so SMS and WhatsApp from that
  number land in the same thread.
* Neither is known yet (the contact is the sender's very first message): nothing can be joined
  before the message creates the customer. `bind` does nothing; called again once the message is
  stored (see ingest), it finds the sender's new customer and joins the phone to it.

Each binding is one DynamoDB transaction (store/verified_contacts.py) with a note in the thread,
an identity-history entry and a `conversation.channel_linked` CRM event, like a handoff link. It is
safe to retry: the writes are conditional on what was read, a retry finds the identities already
together and writes nothing, and a retry of the very update that bound them re-emits its CRM event
(same event id), in case the first attempt failed between the write and the event.
"""

from __future__ import annotations

import random
import time
from typing import Any

from chalicelib.domain.customers import thread_note
from chalicelib.domain.identity import Identity, InvalidIdentity, phone_identity
from chalicelib.domain.ids import new_id
from chalicelib.domain.messages import InboundMessage, Message
from chalicelib.observability import logger
from chalicelib.services.errors import Unavailable
from chalicelib.store import verified_contacts as store

MAX_ATTEMPTS = 6
LINKED_BY = "verified_contact"


class BindingUnavailable(Unavailable):
    """The identities kept changing under the binding; the provider's retry completes it."""


def marker(msg: InboundMessage) -> str:
    """What an identity item bound by this message says in `linked_by`: the message's dedupe key."""
    return f"verified:{msg.dedupe_key}"


def bind(msg: InboundMessage) -> None:
    """Put the sender and their verified phone number on one customer (see the module docstring)."""
    if not msg.verified_phone:
        return
    try:
        phone = phone_identity(msg.verified_phone)
    except InvalidIdentity:
        logger.warning("verified phone number is not usable", extra={"provider": msg.provider})
        return
    for attempt in range(MAX_ATTEMPTS):
        sender_owner = store.owner(msg.sender)
        phone_owner = store.owner(phone)
        if phone_owner is None and sender_owner is None:
            return  # the message creates the customer; the phone joins it once the message is stored
        if phone_owner and sender_owner and phone_owner.customer_id == sender_owner.customer_id:
            _finish(msg, phone, sender_owner, phone_owner)
            return
        if phone_owner is not None:
            # The number's customer is the person: the sender's identity moves to them.
            binding = _binding(msg, msg.sender, phone, phone_owner, sender_owner)
        else:
            assert sender_owner is not None
            binding = _binding(msg, phone, phone, sender_owner, None)
        try:
            store.bind(binding, binding.note.created_at.isoformat())
        except store.Changed as changed:
            if changed.conflicted:
                time.sleep(random.uniform(0, 0.02 * 2**attempt))
            continue
        _announce(msg, binding.identity, phone, binding.target.customer_id, binding.note, binding.previous)
        logger.info(
            "verified phone number bound",
            extra={
                "provider": msg.provider,
                "identity_kind": binding.identity.kind.value,
                "customer_id": binding.target.customer_id,
                "moved_from": binding.previous.customer_id if binding.previous else None,
            },
        )
        return
    raise BindingUnavailable("the customer's identities are changing; retry")


def _binding(
    msg: InboundMessage, identity: Identity, phone: Identity, target: store.Owner, previous: store.Owner | None
) -> store.Binding:
    note_id = new_id("msg")
    channel = msg.channel.value
    if identity == phone:
        text = f"Customer shared their phone number {phone.value} on {channel}: it now reaches this conversation"
    else:
        text = f"Customer continued on {channel} (shared their verified phone number {phone.value})"
    note = thread_note(note_id, target.conversation_id, target.customer_id, msg.channel, text)
    moving = previous is not None and previous.customer_id != target.customer_id
    return store.Binding(
        identity=identity,
        target=target.ref,
        previous=previous,
        linked_by=marker(msg),
        note=note,
        history={"verified_phone": phone.value, "channel": channel, "provider_message": msg.dedupe_key},
        phone=phone.value if identity == phone else None,
        previous_index=store.position_in_profile(previous.customer_id, identity) if moving and previous else None,
    )


def _finish(msg: InboundMessage, phone: Identity, sender_owner: store.Owner, phone_owner: store.Owner) -> None:
    """Already one customer. If this very message bound them (a retry), make sure its event went out."""
    from chalicelib.store import thread

    ours = next((owner for owner in (sender_owner, phone_owner) if owner.linked_by == marker(msg)), None)
    if ours is None or ours.note_message_id is None:
        return  # bound before, by another message or a link: nothing to do
    note = thread.get_message(ours.conversation_id, ours.note_message_id)
    if note is None:
        return
    identity = msg.sender if ours is sender_owner else phone
    _announce(msg, identity, phone, ours.customer_id, note, None)


def _announce(
    msg: InboundMessage,
    identity: Identity,
    phone: Identity,
    customer_id: str,
    note: Message,
    previous: store.Owner | None,
) -> None:
    from chalicelib.api.models import message_view
    from chalicelib.services import events

    data: dict[str, Any] = {
        "message": message_view(note),
        "identity": identity.model_dump(mode="json"),
        "verified_phone": phone.value,
        "customer_id": customer_id,
        "conversation_id": note.conversation_id,
        "linked_by": LINKED_BY,
        "at": note.created_at.isoformat(),
    }
    if previous is not None and previous.customer_id != customer_id:
        data["previous_customer_id"] = previous.customer_id
    events.emit("conversation.channel_linked", data, f"{LINKED_BY}:{msg.dedupe_key}")
