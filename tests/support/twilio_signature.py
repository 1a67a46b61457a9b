"""X-Twilio-Signature, computed from Twilio's documented algorithm (independent of the twilio package).

Form-encoded requests: take the full URL Twilio requested (scheme, host, port if any, path and query
string, exactly as configured), append every POST parameter as name immediately followed by value,
in parameter-name order (Unicode code point order); HMAC-SHA1 the result with the account auth token
as key and base64-encode the digest. When a name occurs several times, each of its values is
appended (name + value per occurrence), values sorted, which matches how Twilio signs repeated keys.

JSON requests: Twilio adds ``bodySHA256=<hex SHA-256 of the raw body>`` to the URL's query string
and signs that URL alone (no parameters appended).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

__all__ = ["body_sha256", "sign_form", "sign_json"]


def _hmac_sha1_b64(auth_token: str, payload: str) -> str:
    digest = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_form(url: str, params: Mapping[str, str] | list[tuple[str, str]], auth_token: str) -> str:
    """Signature of a form-encoded POST of ``params`` to ``url``."""
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    by_name: dict[str, list[str]] = {}
    for name, value in pairs:
        by_name.setdefault(name, []).append(value)
    signed = url
    for name in sorted(by_name):
        for value in sorted(by_name[name]):
            signed += name + value
    return _hmac_sha1_b64(auth_token, signed)


def body_sha256(body: bytes) -> str:
    """Lower-case hex SHA-256 of a raw request body, as carried in the ``bodySHA256`` query parameter."""
    return hashlib.sha256(body).hexdigest()


def sign_json(url_with_body_hash: str, auth_token: str) -> str:
    """Signature of a JSON request whose URL already carries ``?bodySHA256=...``: the URL alone is signed."""
    return _hmac_sha1_b64(auth_token, url_with_body_hash)
