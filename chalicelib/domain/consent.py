"""Consent as state, as pure decisions: keywords, quiet hours, and which channels may be used.

Nothing here does I/O. A customer's consent lives on the Customer (`opted_out[channel]` = when
they opted out); services/consent.py changes it when a keyword arrives, and services/notifications.py
asks these functions which channels a notification may use, and when.

Keywords follow Twilio's standard set for Programmable Messaging (the same words Twilio acts on
for long codes, so the hub's state matches Twilio's own blocklist): only a whole message that is
one keyword counts ("STOP" does, "please stop" does not), case-insensitive, trailing punctuation
ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from chalicelib.domain.customers import Customer
from chalicelib.domain.identity import USER_ID_KINDS
from chalicelib.domain.messages import Channel
from chalicelib.domain.replies import user_id_for

# --- Keywords -------------------------------------------------------------------------------------


class KeywordAction(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"


# Twilio: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT (and, in its current docs, REVOKE and
# OPTOUT) block the sender; START, YES and UNSTOP lift the block; HELP and INFO ask for help.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
# "Yes" is also an ordinary answer to an agent's question: it opts in only a customer who is
# opted out of the channel; otherwise it is a message like any other and goes to routing.
CONDITIONAL_OPT_IN = frozenset({"YES"})
# The channels whose messages are read for keywords (email opts out through List-Unsubscribe).
KEYWORD_CHANNELS = (Channel.SMS, Channel.WHATSAPP)

_LONGEST_KEYWORD = max(len(word) for word in OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS)
_TRAILING = " \t\r\n\u00a0.!?,;:\u2026\u3002\uff01\uff1f'\"\u2019\u201d)"


@dataclass(frozen=True)
class KeywordMatch:
    keyword: str  # upper case, as listed above
    action: KeywordAction


def normalize_keyword(text: str) -> str:
    """The message as a keyword candidate: trimmed, trailing punctuation dropped, upper case."""
    return (text or "").strip().rstrip(_TRAILING).strip().upper()


def match_keyword(text: str, *, opted_out: bool = False) -> KeywordMatch | None:
    """The keyword a whole message is, if any. `opted_out`: the customer is opted out of the
    channel the message came on (only then is "YES" an opt-in)."""
    if len(text or "") > _LONGEST_KEYWORD + 16:
        return None  # cheap exit for ordinary messages
    word = normalize_keyword(text)
    if word in OPT_OUT_KEYWORDS:
        return KeywordMatch(word, KeywordAction.OPT_OUT)
    if word in OPT_IN_KEYWORDS and (opted_out or word not in CONDITIONAL_OPT_IN):
        return KeywordMatch(word, KeywordAction.OPT_IN)
    if word in HELP_KEYWORDS:
        return KeywordMatch(word, KeywordAction.HELP)
    return None


# --- Time zones and quiet hours ----------------------------------------------------------------------

_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_TIMEZONE_CHARS = 64


def parse_clock(value: str) -> time:
    """`HH:MM` (24-hour, two digits each) as a time; ValueError otherwise."""
    match = _CLOCK.match(value if isinstance(value, str) else "")
    if not match:
        raise ValueError(f"'{str(value)[:20]}' is not a time of day as HH:MM (00:00 to 23:59)")
    return time(int(match.group(1)), int(match.group(2)))


def check_timezone(name: str) -> str:
    """An IANA time zone name (`Europe/Istanbul`, `America/New_York`, `UTC`); ValueError otherwise."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    text = (name or "").strip()
    # ZoneInfo reads files by name: refuse anything that is not plainly a zone name first.
    if (
        not text
        or len(text) > MAX_TIMEZONE_CHARS
        or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*", text)
    ):
        raise ValueError(f"'{text[:MAX_TIMEZONE_CHARS]}' is not an IANA time zone name such as 'Europe/Istanbul'")
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"'{text}' is not a known IANA time zone (e.g. 'Europe/Istanbul', 'America/New_York')"
        ) from None
    return text


class QuietHours(BaseModel):
    """When the customer does not want non-urgent notifications, in their own time zone.
    `start` after `end` spans midnight ("22:00" to "08:00")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, value: str) -> str:
        parse_clock(value)
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("quiet hours 'start' and 'end' must differ")
        return self


def quiet_hours_end(
    quiet_hours: dict[str, str] | None, timezone: str | None, now: datetime, default_timezone: str = "UTC"
) -> datetime | None:
    """When the quiet hours `now` falls in end (in UTC), or None when `now` is not in them.

    Invalid stored values count as no quiet hours (the API validates them on the way in)."""
    if not quiet_hours:
        return None
    from zoneinfo import ZoneInfo

    try:
        start, end = parse_clock(quiet_hours["start"]), parse_clock(quiet_hours["end"])
        zone = ZoneInfo(check_timezone(timezone or default_timezone))
    except (KeyError, TypeError, ValueError):
        return None
    if start == end:
        return None
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    quiet = start <= clock < end if start < end else (clock >= start or clock < end)
    if not quiet:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    ends = datetime.combine(day, end, tzinfo=zone).astimezone(UTC)
    if ends <= now:  # a clock change skipped the end time: be safe, the next day's end
        ends = datetime.combine(day + timedelta(days=1), end, tzinfo=zone).astimezone(UTC)
    return ends


# --- Channels ---------------------------------------------------------------------------------------

NOTIFICATION_CHANNELS = (
    Channel.SMS,
    Channel.WHATSAPP,
    Channel.EMAIL,
    Channel.TELEGRAM,
    Channel.LINE,
    Channel.MESSENGER,
    Channel.INSTAGRAM,
    Channel.WECHAT,
)
DEFAULT_ORDER = (Channel.SMS, Channel.WHATSAPP, Channel.EMAIL)


@dataclass(frozen=True)
class Block:
    """Why a channel cannot be used for a customer: `code` for programs, `reason` for people."""

    code: str
    reason: str


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def opted_out_reason(customer: Customer, channel: Channel) -> str | None:
    """A sentence saying the customer opted out of `channel`, or None when they have not."""
    at = customer.opted_out.get(channel.value)
    if at is None:
        return None
    how = "unsubscribed from email" if channel is Channel.EMAIL else f"opted out of {channel.value}"
    return f"the customer {how} at {_iso(at)}"


def channel_block(customer: Customer, channel: Channel) -> Block | None:
    """Consent and reachability: None when the customer may be sent a message on `channel`."""
    if channel not in NOTIFICATION_CHANNELS:
        return Block("unsupported_channel", f"notifications are not sent on {channel.value}")
    reason = opted_out_reason(customer, channel)
    if reason:
        return Block("opted_out", reason)
    if channel is Channel.EMAIL and not customer.email:
        return Block("no_address", "the customer has no email address")
    if channel.value in USER_ID_KINDS:
        if user_id_for(channel, customer) is None:
            return Block("no_address", f"the customer has never written on {channel.value}")
        return None
    if channel is not Channel.EMAIL and not customer.phone:
        return Block("no_address", f"the customer has no phone number for {channel.value}")
    return None


def default_channels(customer: Customer) -> list[Channel]:
    """The order to try when a notification names none: the customer's preferred channel, the
    one they last wrote from, then SMS, WhatsApp, email."""
    order: list[Channel] = []
    for channel in (customer.preferred_channel, customer.last_channel, *DEFAULT_ORDER):
        if channel is not None and channel in NOTIFICATION_CHANNELS and channel not in order:
            order.append(channel)
    return order


def opted_out_view(customer: Customer) -> dict[str, Any]:
    """`opted_out` as the API shows it: channel → ISO 8601 UTC time."""
    return {channel: _iso(at) for channel, at in sorted(customer.opted_out.items())}
