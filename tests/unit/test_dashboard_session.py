"""The dashboard's session token: signed with the API key, expiring, tamper-evident, compared in
constant time; and the cookie that carries it."""

from __future__ import annotations

import hmac

import pytest

from chalicelib.dashboard import session

KEY = "unit-api-key"
NOW = 1_800_000_000.0


def test_a_token_verifies_with_its_key_until_it_expires() -> None:
    token = session.sign(KEY, 3600, now=NOW)
    assert session.verify(KEY, token, now=NOW)
    assert session.verify(KEY, token, now=NOW + 3599)
    assert not session.verify(KEY, token, now=NOW + 3600)
    assert session.expiry_of(token) == int(NOW + 3600)


def test_rotating_the_key_ends_every_session() -> None:
    token = session.sign(KEY, 3600, now=NOW)
    assert not session.verify("the-new-key", token, now=NOW)
    assert not session.verify("", token, now=NOW)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace(t.split(".")[1], str(int(t.split(".")[1]) + 86400)),  # a later expiry
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the signature
        lambda t: t.replace(t.split(".")[2], "x" * 22),  # the nonce
        lambda t: "v2" + t[2:],
        lambda t: t + ".extra",
        lambda t: "",
        lambda t: "v1.1.2.3",
        lambda t: "v1." + "9" * 13 + ".abcdefghijklmnop." + "A" * 43,
    ],
)
def test_a_tampered_or_forged_token_is_refused(tamper: object) -> None:
    token = session.sign(KEY, 3600, now=NOW)
    assert not session.verify(KEY, tamper(token), now=NOW)  # type: ignore[operator]


def test_two_sign_ins_get_different_tokens() -> None:
    assert session.sign(KEY, 60, now=NOW) != session.sign(KEY, 60, now=NOW)


def test_comparisons_are_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(session.hmac, "compare_digest", spy)
    token = session.sign(KEY, 60, now=NOW)
    assert session.verify(KEY, token, now=NOW)
    assert session.key_matches(f"  {KEY} ", KEY)
    assert not session.key_matches("wrong", KEY)
    assert len(calls) == 3
    assert not session.key_matches("", KEY) and not session.key_matches(KEY, "")


def test_the_cookie_is_httponly_strict_and_secure_behind_https() -> None:
    cookie = session.set_cookie("v1.1.abc", 3600, secure=True)
    assert cookie.startswith(f"{session.COOKIE_NAME}=v1.1.abc; ")
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600", "Secure"} <= set(cookie.split("; "))
    assert "Secure" not in session.set_cookie("t", 60, secure=False).split("; ")
    cleared = session.clear_cookie(secure=False)
    assert "Max-Age=0" in cleared.split("; ") and cleared.startswith(f"{session.COOKIE_NAME}=;")


@pytest.mark.parametrize(
    ("header", "found"),
    [
        (None, None),
        ("", None),
        ("other=1", None),
        (f"a=1; {session.COOKIE_NAME}=v1.2.3; b=2", "v1.2.3"),
        ('bad"cookie; ===; \x00', None),
        (f"{session.COOKIE_NAME}=" + "x" * 9000, None),
    ],
)
def test_the_token_is_read_from_the_cookie_header(header: str | None, found: str | None) -> None:
    assert session.token_from_cookies(header) == found
