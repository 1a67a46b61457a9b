"""Send a test message to a running local hub the way the provider would, signature and all.

    .venv/bin/python -m local.send sms --from +15017122661 --body "Where is my order?"
    .venv/bin/python -m local.send whatsapp --from +15017122661 --body "Hi" --name "Ada"
    .venv/bin/python -m local.send email --from "Ada <ada@example.com>" --subject Help --body "Hello"
    .venv/bin/python -m local.send whatsapp-cloud --from +15017122661 --body "Hi via Meta"
    .venv/bin/python -m local.send messenger --from 1254459154682919 --body "Hi on Messenger"
    .venv/bin/python -m local.send instagram --from 17841400000000001 --body "Hi on Instagram"
    .venv/bin/python -m local.send telegram --from 123456789 --name Ada --body "Hi on Telegram"
    .venv/bin/python -m local.send line --from U4af4980629a1b2c3d4e5f60718293a4b --body "Hi on LINE"
    .venv/bin/python -m local.send wechat --from oWX0123456789abcdefghijklmno --body "Hi on WeChat"
    .venv/bin/python -m local.send line --payload events/line/follow.json   # a sample as the provider sends it

Each request is signed as its provider signs it, with the local default secrets unless the
provider's secret (TWILIO_AUTH_TOKEN, SENDGRID_INBOUND_TOKEN, META_APP_SECRET, TELEGRAM_SECRET_TOKEN,
LINE_CHANNEL_SECRET, WECHAT_TOKEN) is set in the environment.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from email.message import EmailMessage
from urllib.parse import urlencode

from local.stack import LOCAL_DEFAULTS


def twilio_signature(url: str, params: dict[str, str], token: str) -> str:
    signed = url + "".join(name + params[name] for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            print(response.status, response.read().decode())
            return 0
    except urllib.error.HTTPError as error:
        print(error.code, error.read().decode(), file=sys.stderr)
        return 1


def send_twilio(base: str, channel: str, sender: str, to: str, body: str, name: str | None) -> int:
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": os.environ.get("TWILIO_ACCOUNT_SID", LOCAL_DEFAULTS["TWILIO_ACCOUNT_SID"]),
        "From": prefix + sender,
        "To": prefix + to,
        "Body": body,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }
    if name:
        params["ProfileName"] = name
    url = f"{base}/webhooks/twilio/messaging"
    public_url = os.environ.get("PUBLIC_BASE_URL", base).rstrip("/") + "/webhooks/twilio/messaging"
    token = os.environ.get("TWILIO_AUTH_TOKEN") or LOCAL_DEFAULTS["TWILIO_AUTH_TOKEN"]
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": twilio_signature(public_url, params, token),
    }
    return _post(url, urlencode(params).encode(), headers)


def send_email(base: str, sender: str, to: str, subject: str, body: str) -> int:
    """An Inbound Parse POST in raw mode: the whole MIME message in the `email` field."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@local.test>"
    message.set_content(body)
    boundary = uuid.uuid4().hex
    fields = {"email": message.as_bytes(), "to": to.encode(), "from": sender.encode(), "subject": subject.encode()}
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in fields.items()
    ]
    payload = b"".join(parts) + f"--{boundary}--\r\n".encode()
    token = os.environ.get("SENDGRID_INBOUND_TOKEN") or LOCAL_DEFAULTS["SENDGRID_INBOUND_TOKEN"]
    credentials = base64.b64encode(f"sendgrid:{token}".encode()).decode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Authorization": f"Basic {credentials}"}
    return _post(f"{base}/webhooks/sendgrid/inbound", payload, headers)


def _secret(name: str) -> str:
    return os.environ.get(name) or LOCAL_DEFAULTS[name]


def _unique_number() -> int:
    return time.time_ns() // 1000


def meta_payload(channel: str, sender: str, body: str, name: str | None) -> bytes:
    """A webhook as Meta sends it: WhatsApp Cloud API, Messenger or Instagram."""
    now = int(time.time())
    if channel == "whatsapp-cloud":
        wa_id = "".join(ch for ch in sender if ch.isdigit())
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550783881",
                "phone_number_id": _secret("META_WHATSAPP_PHONE_NUMBER_ID"),
            },
            "contacts": [{"profile": {"name": name or "Customer"}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": f"wamid.local{_unique_number()}",
                    "timestamp": str(now),
                    "type": "text",
                    "text": {"body": body},
                }
            ],
        }
        envelope = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}],
        }
    else:
        page = _secret("META_PAGE_ID" if channel == "messenger" else "META_INSTAGRAM_ACCOUNT_ID")
        event = {
            "sender": {"id": sender},
            "recipient": {"id": page},
            "timestamp": now * 1000,
            "message": {"mid": f"m_local{_unique_number()}", "text": body},
        }
        envelope = {
            "object": "page" if channel == "messenger" else "instagram",
            "entry": [{"id": page, "time": now * 1000, "messaging": [event]}],
        }
    return json.dumps(envelope).encode()  # json.dumps escapes non-ASCII as \uXXXX, as Meta does


def send_meta(base: str, payload: bytes) -> int:
    signature = hmac.new(_secret("META_APP_SECRET").encode(), payload, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"}
    return _post(f"{base}/webhooks/meta", payload, headers)


def telegram_payload(sender: str, body: str, name: str | None) -> bytes:
    user = {"id": int(sender), "is_bot": False, "first_name": name or "Customer"}
    update = {
        "update_id": _unique_number() % 2**31,
        "message": {
            "message_id": _unique_number() % 2**31,
            "from": user,
            "chat": {**user, "type": "private"},
            "date": int(time.time()),
            "text": body,
        },
    }
    return json.dumps(update, ensure_ascii=False).encode()


def send_telegram(base: str, payload: bytes) -> int:
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": _secret("TELEGRAM_SECRET_TOKEN")}
    return _post(f"{base}/webhooks/telegram", payload, headers)


def line_payload(sender: str, body: str) -> bytes:
    event = {
        "type": "message",
        "mode": "active",
        "timestamp": int(time.time() * 1000),
        "source": {"type": "user", "userId": sender},
        "webhookEventId": f"01LOCAL{_unique_number()}",
        "deliveryContext": {"isRedelivery": False},
        "replyToken": uuid.uuid4().hex,
        "message": {"id": str(_unique_number()), "type": "text", "quoteToken": uuid.uuid4().hex, "text": body},
    }
    return json.dumps({"destination": "U" + "0" * 32, "events": [event]}, ensure_ascii=False).encode()


def send_line(base: str, payload: bytes) -> int:
    digest = hmac.new(_secret("LINE_CHANNEL_SECRET").encode(), payload, hashlib.sha256).digest()
    headers = {"Content-Type": "application/json", "x-line-signature": base64.b64encode(digest).decode()}
    return _post(f"{base}/webhooks/line", payload, headers)


def wechat_payload(sender: str, body: str) -> bytes:
    from xml.sax.saxutils import escape

    return (
        f"<xml><ToUserName><![CDATA[gh_0123456789ab]]></ToUserName>"
        f"<FromUserName><![CDATA[{sender}]]></FromUserName><CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType><Content>{escape(body)}</Content>"
        f"<MsgId>{_unique_number()}</MsgId></xml>"
    ).encode()


def send_wechat(base: str, payload: bytes) -> int:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    # WeChat's scheme, not our choice of hash
    signed = "".join(sorted([_secret("WECHAT_TOKEN"), timestamp, nonce])).encode()
    signature = hashlib.sha1(signed, usedforsecurity=False).hexdigest()
    query = urlencode({"signature": signature, "timestamp": timestamp, "nonce": nonce})
    return _post(f"{base}/webhooks/wechat?{query}", payload, {"Content-Type": "text/xml"})


CHAT_APPS = ("whatsapp-cloud", "messenger", "instagram", "telegram", "line", "wechat")


def send_chat_app(
    base: str, channel: str, sender: str | None, body: str, name: str | None, payload: bytes | None
) -> int:
    if payload is None:
        if not sender:
            raise SystemExit("give --from (the sender's id on the channel) or --payload FILE")
        payload = {
            "telegram": lambda: telegram_payload(sender, body, name),
            "line": lambda: line_payload(sender, body),
            "wechat": lambda: wechat_payload(sender, body),
        }.get(channel, lambda: meta_payload(channel, sender, body, name))()
    if channel in ("whatsapp-cloud", "messenger", "instagram"):
        return send_meta(base, payload)
    return {"telegram": send_telegram, "line": send_line, "wechat": send_wechat}[channel](base, payload)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.send", description=__doc__.split("\n\n")[0])
    parser.add_argument("channel", choices=["sms", "whatsapp", "email", *CHAT_APPS])
    parser.add_argument("--from", dest="sender", default=None, help="phone, email, or the sender's id on the app")
    parser.add_argument("--payload", default=None, help="send this file's bytes as the webhook body (signed)")
    parser.add_argument("--to", default=None, help="the hub's number or address")
    parser.add_argument("--body", default="Hello from the local sandbox")
    parser.add_argument("--subject", default="Hello")
    parser.add_argument("--name", default=None, help="WhatsApp profile name")
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
    args = parser.parse_args(argv)
    if args.channel in CHAT_APPS:
        payload = open(args.payload, "rb").read() if args.payload else None  # noqa: SIM115
        return send_chat_app(args.url, args.channel, args.sender, args.body, args.name, payload)
    if not args.sender:
        parser.error("--from is required")
    if args.channel == "email":
        return send_email(args.url, args.sender, args.to or "support@omnihub.local", args.subject, args.body)
    return send_twilio(args.url, args.channel, args.sender, args.to or "+14155238886", args.body, args.name)


if __name__ == "__main__":
    sys.exit(main())
