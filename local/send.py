"""Send a test message to a running local hub the way the provider would, signature and all.

    .venv/bin/python -m local.send sms --from +15017122661 --body "Where is my order?"
    .venv/bin/python -m local.send whatsapp --from +15017122661 --body "Hi" --name "Ada"
    .venv/bin/python -m local.send email --from "Ada <ada@example.com>" --subject Help --body "Hello"

Uses the local default secrets unless TWILIO_AUTH_TOKEN / SENDGRID_INBOUND_TOKEN are set.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.send", description=__doc__.split("\n\n")[0])
    parser.add_argument("channel", choices=["sms", "whatsapp", "email"])
    parser.add_argument("--from", dest="sender", required=True)
    parser.add_argument("--to", default=None, help="the hub's number or address")
    parser.add_argument("--body", default="Hello from the local sandbox")
    parser.add_argument("--subject", default="Hello")
    parser.add_argument("--name", default=None, help="WhatsApp profile name")
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
    args = parser.parse_args(argv)
    if args.channel == "email":
        return send_email(args.url, args.sender, args.to or "support@omnihub.local", args.subject, args.body)
    return send_twilio(args.url, args.channel, args.sender, args.to or "+14155238886", args.body, args.name)


if __name__ == "__main__":
    sys.exit(main())
