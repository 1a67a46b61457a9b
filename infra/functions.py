"""The Lambda functions and exactly what each one may touch.

Read from the code (tests/infra/test_grants_match_code.py re-derives it from the import graph of
each entry point and fails when this table falls behind):

- Every function reads and writes the one table (keyed operations and transactions, never Scan).
- `sends_to`: the queues whose URL the function's code sends to (chalicelib/queue.py: routing;
  services/timers.py: timers; services/events.py: CRM events; services/crm_delivery.py: CRM
  events retries and its dead-letter queue).
- `secrets`: the `secret("...")` names its code reads; each becomes `<NAME>_PARAMETER`, the name
  of an SSM SecureString the function may read, and nothing else.
- `providers`: whether its code can send through the twilio or sendgrid libraries (the large
  "providers" layer is attached only then). The routing worker answers STOP/START/HELP on SMS
  and WhatsApp (services/consent.py) and falls back to the next channel on a failed status
  (services/delivery_status.py -> notifications); the timer worker sends scheduled notifications
  (services/notifications.py, offline_fallback.py). Only the CRM events worker never sends.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.definitions import CRM_EVENTS_QUEUE, QUEUES, ROUTING_QUEUE, TIMER_QUEUE, QueueDefinition

# The dead-letter queue of the CRM events queue is also written directly: a delivery that
# exhausted its retries is dead-lettered by the worker itself (services/crm_delivery.py).
CRM_EVENTS_DLQ = "CrmEventsQueue.dlq"
CRM_EVENTS_DLQ_URL_ENV = "CRM_EVENTS_QUEUE_DLQ_URL"

SECRET_PARAMETER_ROOT = "/omnihub"  # noqa: S105 (a parameter path, not a secret)

# Every secret the code reads with chalicelib.config.secret(); the operator stores each one as an
# SSM SecureString named /omnihub/<stage>/<name with dashes>.
SECRETS: dict[str, str] = {
    "hub_api_key": "Bearer key of the REST API (/v1) for the CRM and agents",
    "twilio_auth_token": "Twilio auth token: verifies Twilio webhooks, sends SMS and WhatsApp",
    "sendgrid_inbound_token": "shared secret in the SendGrid Inbound Parse URL",
    "sendgrid_api_key": "SendGrid API key: sends email",
    "unsubscribe_secret": "signs one-click email unsubscribe links",
    "link_secret": "signs cross-channel handoff links",
    "webchat_session_secret": "signs web chat session tokens",
    "webchat_jwt_secret": "HS256 key of the signed-in web chat visitor's JWT",
    "meta_app_secret": "Meta app secret: verifies X-Hub-Signature-256 on Meta webhooks",
    "meta_verify_token": "the verify token typed into Meta's webhook settings (GET handshake)",
    "meta_access_token": "Meta (system user) access token: sends on WhatsApp Cloud, Messenger, Instagram",
    "telegram_bot_token": "Telegram bot token from BotFather: sends",
    "telegram_secret_token": "secret_token given to Telegram's setWebhook: verifies webhooks",
    "line_channel_secret": "LINE channel secret: verifies X-Line-Signature",
    "line_channel_access_token": "LINE channel access token: sends",
    "wechat_token": "WeChat server token: verifies webhook signatures",
    "wechat_app_secret": "WeChat AppSecret: fetches the access token for sending",
}

# Read only where webhooks are verified or the REST API authenticates: the HTTP edge. A worker's
# code may import the module that holds them (a channel module verifies and sends), but never
# calls the verification path, so workers are not granted these.
EDGE_ONLY_SECRETS = frozenset(
    {
        "hub_api_key",
        "sendgrid_inbound_token",
        "meta_app_secret",
        "meta_verify_token",
        "telegram_secret_token",
        "line_channel_secret",
        "wechat_token",
    }
)

_SENDING_SECRETS = tuple(name for name in SECRETS if name not in EDGE_ONLY_SECRETS)
# The routing worker answers consent keywords and survey ratings (through the outbound path; the
# survey module signs email rating links with LINK_SECRET) but serves no web chat session.
_ROUTING_SECRETS = tuple(
    name for name in _SENDING_SECRETS if name not in {"webchat_session_secret", "webchat_jwt_secret"}
)


def parameter_name(stage: str, secret: str) -> str:
    return f"{SECRET_PARAMETER_ROOT}/{stage}/{secret.replace('_', '-')}"


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    entry_module: str  # the module Lambda imports ("app" for the Chalice API)
    handler: str
    sends_to: tuple[str, ...]  # QueueDefinition.logical_id, or CRM_EVENTS_DLQ
    secrets: tuple[str, ...]
    providers: bool
    consumes: QueueDefinition | None = None
    timeout_seconds: int = 30
    # Writes the event history (services/event_log.py): the Firehose stream's name, and PutRecord on it.
    event_log: bool = False
    batch_size: int = 10
    max_batching_window_seconds: int = 0

    @property
    def short_name(self) -> str:
        return self.entry_module.rsplit(".", 1)[-1]


API = FunctionSpec(
    logical_id="APIHandler",
    entry_module="app",
    handler="app.app",
    sends_to=(ROUTING_QUEUE.logical_id, TIMER_QUEUE.logical_id, CRM_EVENTS_QUEUE.logical_id),
    secrets=tuple(SECRETS),
    providers=True,
    timeout_seconds=15,
)

WORKERS: tuple[FunctionSpec, ...] = (
    FunctionSpec(
        logical_id="RoutingWorker",
        entry_module="handlers.routing",
        handler="handlers.routing.handler",
        consumes=ROUTING_QUEUE,
        # FIFO event sources take at most 10 records; one customer's records stay in order.
        batch_size=10,
        timeout_seconds=30,
        sends_to=(ROUTING_QUEUE.logical_id, TIMER_QUEUE.logical_id, CRM_EVENTS_QUEUE.logical_id),
        secrets=_ROUTING_SECRETS,
        providers=True,
    ),
    FunctionSpec(
        logical_id="TimerWorker",
        entry_module="handlers.timers",
        handler="handlers.timers.handler",
        consumes=TIMER_QUEUE,
        batch_size=10,
        max_batching_window_seconds=1,
        timeout_seconds=30,
        sends_to=(ROUTING_QUEUE.logical_id, TIMER_QUEUE.logical_id, CRM_EVENTS_QUEUE.logical_id),
        secrets=_SENDING_SECRETS,
        providers=True,
    ),
    FunctionSpec(
        logical_id="CrmEventsWorker",
        entry_module="handlers.crm_events",
        handler="handlers.crm_events.handler",
        consumes=CRM_EVENTS_QUEUE,
        # A record may wait WEBHOOK_TIMEOUT_SECONDS (5) for a slow CRM; records that would not
        # finish before the deadline are re-queued by the worker, so a small batch keeps retries rare.
        batch_size=5,
        max_batching_window_seconds=1,
        timeout_seconds=30,
        sends_to=(CRM_EVENTS_QUEUE.logical_id, CRM_EVENTS_DLQ),
        secrets=(),
        providers=False,
        event_log=True,
    ),
)

ALL_FUNCTIONS: tuple[FunctionSpec, ...] = (API, *WORKERS)


def check_visibility_timeouts(workers: tuple[FunctionSpec, ...] = WORKERS) -> None:
    """AWS advises a queue visibility timeout of at least six times its consumer's timeout."""
    for spec in workers:
        assert spec.consumes is not None
        needed = 6 * spec.timeout_seconds
        if spec.consumes.visibility_timeout_seconds < needed:
            raise ValueError(
                f"{spec.consumes.logical_id}: visibility timeout {spec.consumes.visibility_timeout_seconds} s "
                f"is less than 6 x the {spec.logical_id} timeout ({needed} s)"
            )


def queue_definition(logical_id: str) -> QueueDefinition:
    return next(queue for queue in QUEUES if queue.logical_id == logical_id)
