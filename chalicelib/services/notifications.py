"""Proactive notifications: `POST /v1/notifications`, `GET /v1/notifications/{id}`, the fallback
after a failed delivery, and the timer that ends quiet hours.

The hub sends a notification on the first channel in its list the customer has consented to, can
be reached on, and the content can go out on now (see domain/notifications.py), stores it in the
customer's thread as an outbound message carrying `notification_id`, and tells the CRM
(`message.created`). A non-urgent notification that arrives in the customer's quiet hours is held:
stored as `scheduled` with a timer for the end of them. When a status callback later says the
message failed or was undelivered (services/delivery_status.py queues a `DeliveryFailed` timer,
due at once), `on_status` sends it on the next eligible channel. Every send goes through the one
outbound path (services/outbound.py), which records the notification's new state in the same
transaction as its message.

Concurrency: every change of a notification is a write conditional on its version. Before sending,
a worker moves it to `sending` (a claim): of two workers (two callbacks for one failure, a timer
and its redelivery) one wins and the other does nothing. If no provider can be reached at all, the
notification is held again (`scheduled`, retried by a timer in RETRY_SECONDS) rather than failed.

AWS requests for an immediate notification to a known customer, sent on the first channel:
GetItem identity + GetItem customer (or GetItem customer by id), PutItem notification, GetItem
conversation, TransactWriteItems (message + provider-id lookup + message→notification pointer +
conversation + notification), Query (statuses that beat the recording), SQS SendMessageBatch
(message.created, with the conversation as the write left it), GetItem (analytics reads the
cycle; a notification is no response, so nothing more): 8, no Scan.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from chalicelib.api.notification_models import CustomerRef, NotificationRequest, notification_view
from chalicelib.channels import registry
from chalicelib.config import settings
from chalicelib.domain.consent import Block, default_channels, quiet_hours_end
from chalicelib.domain.customers import Conversation, Customer
from chalicelib.domain.identity import Identity, InvalidIdentity, email_identity, phone_identity
from chalicelib.domain.ids import new_id
from chalicelib.domain.messages import FAILURE_STATUSES, Channel, DeliveryStatus, Message, utcnow
from chalicelib.domain.notifications import (
    Attempt,
    AttemptStatus,
    Delivery,
    Notification,
    NotificationDue,
    NotificationStatus,
    TemplateCatalog,
    TemplateError,
    TemplateRef,
    plan_delivery,
)
from chalicelib.domain.outbound import OutboundMessage, Purpose, Template
from chalicelib.domain.replies import (
    ProviderUnavailable,
    RefusalKind,
    Refused,
    provider_for,
)
from chalicelib.domain.timers import DeliveryFailed
from chalicelib.observability import logger
from chalicelib.services import idempotency, outbound, timers
from chalicelib.services.errors import NotFound, SentNotRecorded, Unavailable, is_storage_failure
from chalicelib.services.idempotency import Done
from chalicelib.services.outbound import AnnounceFailed, Companion, NotRecorded
from chalicelib.store import customers as customer_store
from chalicelib.store import notifications as store
from chalicelib.store import thread

RETRY_SECONDS = 60  # when no provider could be reached: try again this much later
MAX_RETRIES = 10


# --- Settings ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotificationSettings:
    catalog: TemplateCatalog
    business_name: str
    default_timezone: str


def notification_settings() -> NotificationSettings:
    """The template catalog (`TWILIO_WHATSAPP_TEMPLATES`, `NOTIFICATION_TEMPLATES`), the business's
    name and the time zone of quiet hours for customers without one. Raises TemplateError when a
    template setting is malformed."""
    config = settings()
    return NotificationSettings(
        catalog=TemplateCatalog.from_json(config.twilio_whatsapp_templates, config.notification_templates),
        business_name=config.display_name,
        default_timezone=config.default_customer_timezone.strip() or "UTC",
    )


# --- Outcome -----------------------------------------------------------------------------------------


def _is_storage_failure(exc: Exception) -> bool:
    return is_storage_failure(exc) or isinstance(exc, store.Lost)


# --- POST /v1/notifications ----------------------------------------------------------------------------


def create_notification(
    request: NotificationRequest, idempotency_key: str | None = None, *, now: datetime | None = None
) -> Done[Notification]:
    """Send (or schedule) a notification: the notification as it stands (sent or scheduled).
    Raises Refused (nothing sent: no eligible channel, unknown customer, not configured, or every
    provider refused it), Unavailable (nothing sent: retry), SentNotRecorded."""
    now = now or utcnow()
    return idempotency.run(
        idempotency_key,
        "notification",
        request.fingerprint_data(),
        lambda claim: _guarded_run(request, now),
        encode=lambda notification: notification.model_dump(mode="json"),
        decode=Notification.model_validate,
        now=now,
    )


def _guarded_run(request: NotificationRequest, now: datetime) -> Notification:
    try:
        return _run(request, now)
    except SentNotRecorded:
        raise  # the key (if any) stays claimed: a repeat is "in progress" rather than a second message
    except Exception as exc:
        if not _is_storage_failure(exc):
            raise
        logger.warning("notification not handled", extra={"error": type(exc).__name__})
        raise Unavailable("the hub's storage is unavailable; nothing was sent; retry") from exc


def _run(request: NotificationRequest, now: datetime) -> Notification:
    try:
        config = notification_settings()
    except TemplateError as exc:
        raise Refused(RefusalKind.NOT_CONFIGURED, "not_configured", str(exc)) from None
    try:
        customer, new_identity = _resolve_customer(request.customer)
    except InvalidIdentity as exc:
        raise Refused(RefusalKind.INVALID, "invalid_request", f"customer: {exc}") from None
    except NotFound as exc:
        raise Refused(RefusalKind.NOT_FOUND, "not_found", str(exc)) from None
    notification = Notification(
        id=new_id("ntf"),
        customer_id=customer.id,
        conversation_id=customer.conversation_id,
        channels=request.channel_list or default_channels(customer),
        text=request.text,
        template=TemplateRef(name=request.template.name, params=request.template.string_params())
        if request.template
        else None,
        subject=request.subject,
        urgent=request.urgent,
        status=NotificationStatus.SENDING,
        created_at=now,
        updated_at=now,
    )
    quiet_until = (
        None
        if request.urgent
        else quiet_hours_end(customer.quiet_hours, customer.timezone, now, config.default_timezone)
    )
    plans = {
        channel: _plan(notification, customer, channel, now, config, check_window=quiet_until is None)
        for channel in notification.channels
    }
    if all(isinstance(plan, Block) for plan in plans.values()):
        reasons = {
            channel.value: {"code": plan.code, "reason": plan.reason}
            for channel, plan in plans.items()
            if isinstance(plan, Block)
        }
        summary = "; ".join(f"{name}: {why['reason']}" for name, why in reasons.items())
        raise Refused(
            RefusalKind.UNPROCESSABLE,
            "no_eligible_channel",
            f"no channel can take this notification ({summary}); nothing was sent",
            {"channels": reasons},
        )
    if new_identity is not None:
        customer = _create_customer(new_identity, customer)
        notification = notification.model_copy(
            update={"customer_id": customer.id, "conversation_id": customer.conversation_id}
        )
    if quiet_until is not None:
        held = notification.model_copy(update={"status": NotificationStatus.SCHEDULED, "scheduled_for": quiet_until})
        # The timer first: if storing then fails, the timer finds nothing and does nothing.
        timers.schedule(NotificationDue(notification_id=held.id), quiet_until)
        store.create_notification(held)
        logger.info(
            "notification scheduled", extra={"notification_id": held.id, "scheduled_for": quiet_until.isoformat()}
        )
        return held
    store.create_notification(notification)
    conversation = _conversation(customer)
    result = _send_through(notification, customer, conversation, notification.channels, now, config)
    return _sent_or_refused(result.finish(now), result)


def _sent_or_refused(notification: Notification, result: _Round) -> Notification:
    if notification.status is NotificationStatus.SENT:
        return notification
    details = {"notification": notification_view(notification)}
    if result.only_unavailable:
        raise Unavailable(
            f"no provider could be reached; nothing was sent (notification {notification.id} is failed); retry",
            details,
        )
    raise Refused(
        RefusalKind.PROVIDER_REFUSED,
        "provider_error",
        f"every eligible channel was refused by its provider; see the attempts of notification {notification.id}",
        details,
    )


def get_notification(notification_id: str) -> dict[str, Any]:
    notification = store.get_notification(notification_id)
    if notification is None:
        raise NotFound(f"no notification '{notification_id}'")
    return notification_view(notification)


# --- The customer ------------------------------------------------------------------------------------


def _resolve_customer(ref: CustomerRef) -> tuple[Customer, Identity | None]:
    """The customer the reference names, and the identity to create them with if they are new
    (the new customer is only built here, and stored once the notification can go out)."""
    if ref.id is not None:
        customer = customer_store.get_customer(ref.id)
        if customer is None:
            raise NotFound(f"no customer '{ref.id}'")
        return customer, None
    identity = (
        phone_identity(ref.phone, settings().default_phone_region) if ref.phone else email_identity(str(ref.email))
    )
    found = thread.find_identity(identity)
    if found is not None:
        customer = customer_store.get_customer(found.customer_id)
        if customer is not None:
            return customer, None
    at = utcnow()
    customer = Customer(
        id=new_id("cus"),
        conversation_id=new_id("conv"),
        phone=identity.value if ref.phone else None,
        email=identity.value if ref.email else None,
        identities=[identity],
        created_at=at,
        updated_at=at,
    )
    return customer, identity


def _create_customer(identity: Identity, customer: Customer) -> Customer:
    from chalicelib.api.models import conversation_view, customer_view
    from chalicelib.services import events

    conversation = Conversation(
        id=customer.conversation_id,
        customer_id=customer.id,
        created_at=customer.created_at,
        updated_at=customer.created_at,
    )
    try:
        store.create_customer(identity, customer, conversation, "api:notification")
    except thread.IdentityTaken:
        found = thread.find_identity(identity)
        existing = customer_store.get_customer(found.customer_id) if found else None
        if existing is None:
            raise Unavailable("the customer is being created by another request; retry") from None
        return existing
    events.emit_many(
        [
            (
                "customer.created",
                {"customer": customer_view(customer), "conversation": conversation_view(conversation)},
                customer.id,
            )
        ]
    )
    return customer


def _conversation(customer: Customer) -> Conversation:
    conversation = thread.get_conversation(customer.conversation_id)
    if conversation is None:
        raise NotFound(f"the conversation of customer '{customer.id}' does not exist")
    return conversation


# --- Sending ----------------------------------------------------------------------------------------


def _plan(
    notification: Notification,
    customer: Customer,
    channel: Channel,
    now: datetime,
    config: NotificationSettings,
    *,
    check_window: bool = True,
) -> Delivery | Block:
    module = registry.channel(provider_for(channel, customer.whatsapp_provider))
    plan = plan_delivery(
        notification,
        customer,
        channel,
        now,
        config.catalog,
        business_name=config.business_name,
        rules=module.RULES[channel.value],
        check_window=check_window,
    )
    if isinstance(plan, Block):
        return plan
    missing = module.missing_settings(channel.value)
    if missing:
        return Block("not_configured", f"{channel.value} is not configured: set {', '.join(missing)}")
    return plan


@dataclass
class _Round:
    """One pass over the channels. A send (or a provider's refusal) is stored as it happens; the
    final state of a pass that sent nothing is left to the caller (`finish`, or hold it again)."""

    notification: Notification  # the state reached, in memory
    stored_version: int  # the version stored now
    sent: bool = False
    stored: bool = False  # a message (sent or refused) was written
    unavailable: bool = False  # a provider could not be reached

    @property
    def only_unavailable(self) -> bool:
        return not self.sent and not self.stored and self.unavailable

    def finish(self, now: datetime) -> Notification:
        """Store the outcome of a pass that sent nothing: failed, with its attempts."""
        if self.sent:
            return self.notification
        failed = self.notification.model_copy(
            update={
                "status": NotificationStatus.FAILED,
                "version": self.stored_version + 1,
                "updated_at": max(now, self.notification.updated_at),
            }
        )
        store.replace_notification(failed, self.stored_version)
        logger.info("notification failed", extra={"notification_id": failed.id})
        self.notification, self.stored_version = failed, failed.version
        return failed


def _send_through(
    claimed: Notification,
    customer: Customer,
    conversation: Conversation,
    channels: list[Channel],
    now: datetime,
    config: NotificationSettings,
) -> _Round:
    """Try `channels` in order until a provider accepts; `claimed` is held by this worker (status
    `sending`, stored at its version). Each send goes through the one outbound path, and the
    notification's new state is recorded in the same transaction as its message."""
    result = _Round(claimed, claimed.version)
    current = claimed
    for channel in channels:
        plan = _plan(current, customer, channel, now, config)
        if isinstance(plan, Block):
            current = _with_attempt(current, _skipped(channel, now, plan.code, plan.reason))
            continue
        companion = _Companion(current, channel, now, result.stored_version)
        try:
            delivered = outbound.send(_outbound(plan), customer, conversation, companion=companion, now=now)
        except Refused as refused:
            current = _with_attempt(current, _skipped(channel, now, refused.code, refused.message))
            continue
        except ProviderUnavailable as exc:
            result.unavailable = True
            logger.warning("provider unavailable", extra={"provider": exc.provider, "notification_id": current.id})
            reason = f"{exc.provider} could not be reached ({exc.reason})"
            current = _with_attempt(
                current, Attempt(channel=channel, status=AttemptStatus.UNAVAILABLE, at=now, reason=reason)
            )
            continue
        except AnnounceFailed as exc:  # stored; the CRM hears of it with the notification's next change
            delivered = exc.delivered
        except NotRecorded as exc:
            raise SentNotRecorded(
                f"notification {current.id} was handed to {exc.sent.provider} as message {exc.sent.id} "
                "but could not be recorded; do not send it again"
            ) from exc
        assert companion.reached is not None
        current = companion.reached
        conversation = delivered.conversation
        result.stored_version = current.version
        result.stored = True
        result.sent = not delivered.rejected
        logger.info(
            "notification sent" if result.sent else "notification refused by the provider",
            extra={"notification_id": current.id, "channel": channel.value, "message_id": delivered.message.id},
        )
        if result.sent:
            break
    result.notification = current
    return result


class _Companion:
    """Builds, from the message the outbound path sent, the notification's new state that is
    recorded with it (and remembers it)."""

    def __init__(self, before: Notification, channel: Channel, now: datetime, stored_version: int) -> None:
        self.before, self.channel, self.now, self.stored_version = before, channel, now, stored_version
        self.reached: Notification | None = None

    def __call__(self, message: Message) -> Companion:
        after = _after_send(self.before, self.channel, message, self.now, self.stored_version)
        self.reached = after
        return Companion(
            writes=store.send_writes(after, self.stored_version, message.id, message.conversation_id),
            event_data={"notification": notification_view(after)},
            message_data={"notification_id": after.id},
        )


def _outbound(plan: Delivery) -> OutboundMessage:
    template = None
    if plan.content_sid or plan.meta_template:
        template = Template(
            preview=plan.body,
            params=dict(plan.content_variables or {}),
            content_sid=plan.content_sid,
            meta_name=plan.meta_template,
        )
    return OutboundMessage(
        purpose=Purpose.NOTIFICATION, text=plan.body, channel=plan.channel, subject=plan.subject, template=template
    )


def _skipped(channel: Channel, now: datetime, code: str, reason: str) -> Attempt:
    return Attempt(channel=channel, status=AttemptStatus.SKIPPED, at=now, code=code, reason=reason)


def _after_send(
    before: Notification, channel: Channel, message: Message, now: datetime, stored_version: int
) -> Notification:
    """The notification once `message` went out for it (or was refused by the provider)."""
    if message.provider_message_id is None and message.status is DeliveryStatus.FAILED:
        attempt = Attempt(
            channel=channel,
            status=AttemptStatus.REJECTED,
            at=now,
            reason=f"{message.provider} refused it: {message.error_message}",
            message_id=message.id,
            error_code=message.error_code,
        )
        after = _with_attempt(before, attempt)
    else:
        attempt = Attempt(
            channel=channel,
            status=AttemptStatus.SENT,
            at=now,
            message_id=message.id,
            provider_message_id=message.provider_message_id,
        )
        after = _with_attempt(before, attempt).model_copy(
            update={"status": NotificationStatus.SENT, "channel": channel, "message_id": message.id}
        )
    return after.model_copy(update={"version": stored_version + 1, "updated_at": max(now, after.updated_at)})


def _with_attempt(notification: Notification, attempt: Attempt) -> Notification:
    return notification.model_copy(update={"attempts": [*notification.attempts, attempt]})


# --- Later: fallback after a failed delivery, the end of quiet hours --------------------------------------


def on_status(
    message_id: str, status: DeliveryStatus | str, *, error_code: str | None = None, now: datetime | None = None
) -> Notification | None:
    """A delivery status for an outbound message. When it says failed or undelivered and the message
    is the current send of a notification, send the notification on its next eligible channel.
    Idempotent: a repeated or late callback finds the notification moved on and does nothing.
    Costs nothing for other statuses, one GetItem for a failure of a message that is no notification's."""
    status = DeliveryStatus(status)
    if status not in FAILURE_STATUSES:
        return None
    notification_id = store.notification_for_message(message_id)
    if notification_id is None:
        return None
    notification = store.get_notification(notification_id)
    if (
        notification is None
        or notification.status is not NotificationStatus.SENT
        or notification.message_id != message_id
    ):
        return None
    now = now or utcnow()
    try:
        config = notification_settings()
    except TemplateError as exc:  # a deployment error: never a 5xx to Twilio's callback
        logger.error("notification fallback impossible", extra={"notification_id": notification.id, "error": str(exc)})
        return None
    attempts = [
        attempt.model_copy(
            update={
                "status": AttemptStatus.UNDELIVERED,
                "error_code": error_code or attempt.error_code,
                "reason": f"delivery {status.value}",
            }
        )
        if attempt.message_id == message_id
        else attempt
        for attempt in notification.attempts
    ]
    claimed = _claim(notification.model_copy(update={"attempts": attempts}), notification.version, now)
    if claimed is None:
        return None
    logger.info("notification falling back", extra={"notification_id": claimed.id, "failed_message_id": message_id})
    return _continue(claimed, now, config)


def send_due(notification_id: str, *, now: datetime | None = None) -> Notification | None:
    """The timer of a held notification fired: send it now (unless quiet hours moved meanwhile)."""
    now = now or utcnow()
    notification = store.get_notification(notification_id)
    if notification is None or notification.status is not NotificationStatus.SCHEDULED:
        return None  # sent, failed, or never stored
    customer = customer_store.get_customer(notification.customer_id)
    if customer is None:
        failed = notification.model_copy(
            update={"status": NotificationStatus.FAILED, "version": notification.version + 1, "updated_at": now}
        )
        store.replace_notification(failed, notification.version)
        return failed
    config = notification_settings()
    if not notification.urgent and notification.retries == 0:
        later = quiet_hours_end(customer.quiet_hours, customer.timezone, now, config.default_timezone)
        if later is not None:
            return _hold(notification, later, now, retry=False)
    claimed = _claim(notification, notification.version, now)
    if claimed is None:
        return None
    return _continue(claimed, now, config)


def handle_timer(message: NotificationDue) -> None:
    """What handlers/timers.py calls for a NotificationDue timer."""
    send_due(message.notification_id)


def handle_delivery_failed(message: DeliveryFailed) -> None:
    """What handlers/timers.py calls when a provider said a message failed (delivery_status.py)."""
    on_status(message.message_id, message.status, error_code=message.error_code)


def _claim(notification: Notification, expected_version: int, now: datetime) -> Notification | None:
    claimed = notification.model_copy(
        update={
            "status": NotificationStatus.SENDING,
            "version": expected_version + 1,
            "updated_at": max(now, notification.updated_at),
        }
    )
    try:
        store.replace_notification(claimed, expected_version)
    except store.Lost:
        return None  # another worker has it
    return claimed


def _continue(claimed: Notification, now: datetime, config: NotificationSettings) -> Notification:
    """Send a claimed notification on its remaining channels. When no provider could be reached
    at all (and nothing was stored), hold it again, RETRY_SECONDS later, instead of failing it."""
    customer = customer_store.get_customer(claimed.customer_id)
    if customer is None:
        raise NotFound(f"no customer '{claimed.customer_id}'")
    result = _send_through(claimed, customer, _conversation(customer), claimed.remaining_channels(), now, config)
    if result.only_unavailable and claimed.retries < MAX_RETRIES:
        return _hold(claimed, now + timedelta(seconds=RETRY_SECONDS), now, retry=True)
    return result.finish(now)


def _hold(notification: Notification, until: datetime, now: datetime, *, retry: bool) -> Notification:
    from chalicelib.services import timers

    held = notification.model_copy(
        update={
            "status": NotificationStatus.SCHEDULED,
            "scheduled_for": until,
            "retries": notification.retries + (1 if retry else 0),
            "version": notification.version + 1,
            "updated_at": max(now, notification.updated_at),
        }
    )
    timers.schedule(NotificationDue(notification_id=held.id), until)
    try:
        store.replace_notification(held, notification.version)
    except store.Lost:
        return notification
    logger.info("notification held", extra={"notification_id": held.id, "until": until.isoformat(), "retry": retry})
    return held
