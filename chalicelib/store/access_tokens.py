"""Short-lived provider API tokens, shared by every Lambda instance.

| item                  | pk                                    | sk           |
|-----------------------|---------------------------------------|--------------|
| access token          | ACCESS_TOKEN#<provider>#<account>     | ACCESS_TOKEN |

WeChat's API token lives two hours, its fetches are counted per day, and the classic endpoint
invalidates the previous token on every fetch: instances that each fetched their own would keep
knocking each other's token out. So one token per provider account lives here, with the epoch
second it expires at; any instance that finds it stale fetches a new one and writes it back.

`expires_at` is the table's TTL attribute, so DynamoDB may delete a long-expired token; nothing
relies on that (a caller treats a token near `expires_at` as stale).

Two instances refreshing at once both write: the put is conditional on the stored token expiring
no later than the new one, so a slow refresher never replaces a newer token with an older one.
Both tokens stay usable (WeChat's stable token API hands every caller the same token and keeps the
old one valid for five minutes after a renewal), so the loser simply uses the token it fetched.
"""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.domain.access_tokens import AccessToken
from chalicelib.store import table
from chalicelib.store.table import ConditionFailed

SORT_KEY = "ACCESS_TOKEN"


def access_token_key(provider: str, account: str) -> dict[str, str]:
    return {"pk": f"ACCESS_TOKEN#{provider}#{account}", "sk": SORT_KEY}


def get(provider: str, account: str) -> AccessToken | None:
    """The stored token for the account, if any (it may be expired: check `seconds_left`)."""
    item = table.get(access_token_key(provider, account))
    if item is None or not item.get("access_token"):
        return None
    try:
        return AccessToken(token=str(item["access_token"]), expires_at=int(item["expires_at"]))
    except (KeyError, TypeError, ValueError):
        return None  # an item written by hand or by an older version: fetch a fresh token


def put(provider: str, account: str, token: str, expires_at: int, now: float, replacing: str | None = None) -> bool:
    """Store a freshly fetched token; False when a token that lives longer is already stored.

    `replacing` is a token the provider just refused: if that is the one stored, it is replaced
    whatever expiry it claims (a refused token must never stay in the cache).
    """
    fetched_at = datetime.fromtimestamp(now, UTC).isoformat()
    values = {":token": token, ":expires_at": expires_at, ":fetched_at": fetched_at, ":type": "access_token"}
    condition = "attribute_not_exists(pk) OR expires_at <= :expires_at"
    if replacing:
        condition += " OR access_token = :refused"
        values[":refused"] = replacing
    try:
        table.update(
            access_token_key(provider, account),
            "SET access_token = :token, expires_at = :expires_at, fetched_at = :fetched_at, #type = :type",
            {"#type": "type"},
            values,
            condition=condition,
        )
    except ConditionFailed:
        return False
    return True
