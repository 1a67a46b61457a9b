"""A realistic burst of traffic through a running local hub (`make run`), so the dashboard has
something to show: agents sign on, customers write on several channels (signed as each provider
signs), agents accept offers, reply, transfer one conversation and resolve most; one customer
follows a handoff link to Telegram; a few are left waiting, so the live panel has a queue.

    .venv/bin/python -m local.demo                 # against http://127.0.0.1:8000, about a minute
    .venv/bin/python -m local.demo --url http://127.0.0.1:9000 --customers 40

Then open http://127.0.0.1:8000/dashboard and sign in with the API key (`local-dev-api-key`).
Analytics count every cycle at the moment it happens (the real clock), so the demo fills today.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from local import send

CHANNELS = ("sms", "whatsapp", "email", "telegram", "messenger", "line")
# Mostly the channels agents take (capacity is per sms, whatsapp, email, webchat); the chat apps' few wait.
WEIGHTS = (4, 4, 3, 1, 1, 1)
CAPACITY = {"sms": 3, "whatsapp": 3, "email": 4, "webchat": 3}
AGENTS = {
    "grace": {"name": "Grace Hopper", "skills": {"billing": 3}},
    "alan": {"name": "Alan Turing", "skills": {"billing": 1}},
    "ada": {"name": "Ada Lovelace", "skills": {"billing": 5}},
}
OPENERS = [
    "Hi, where is my order #{n}?",
    "My invoice {n} looks wrong, can you check?",
    "Hello! I want to change my delivery address",
    "The app keeps logging me out",
    "Can I get a refund for order {n}?",
    "Do you ship to Canada?",
    "urgent: my card was charged twice",
    "Is the blue model back in stock?",
]
FOLLOW_UPS = ["Thanks, and one more thing…", "Any update?", "Great, that helps", "Ok, I'll wait"]
REPLIES = [
    "Hi! Let me look that up for you.",
    "Thanks for waiting, I'm on it.",
    "Sorry about that, I've fixed it on our side.",
    "It ships today; tracking follows by email.",
]


@dataclass
class Customer:
    channel: str
    address: str
    name: str
    conversation_id: str | None = None
    replied_at: float | None = None
    resolve_after: float = 0.0
    followed_up: bool = False


@dataclass
class Demo:
    url: str
    key: str
    rng: random.Random
    customers: list[Customer] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    # --- HTTP --------------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self.key}",
                **({"Content-Type": "application/json"} if data is not None else {}),
                **(headers or {}),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw) if raw else None
            except ValueError:
                return error.code, None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            return 0, {"error": {"message": str(error)}}

    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    # --- Customers -----------------------------------------------------------------------------

    def new_customer(self, index: int) -> Customer:
        channel = CHANNELS[index % len(CHANNELS)] if index < len(CHANNELS) else self.rng.choices(CHANNELS, WEIGHTS)[0]
        unique = uuid.uuid4().int
        name = self.rng.choice(["Ada", "Lin", "Mehmet", "Sofia", "Kenji", "Amara", "Lucas", "Priya", "Noor", "Tom"])
        address = {
            "sms": f"+1501{unique % 10_000_000:07d}",
            "whatsapp": f"+1502{unique % 10_000_000:07d}",
            "email": f"{name.lower()}.{unique % 100000}@example.com",
            "telegram": str(100_000_000 + unique % 900_000_000),
            "messenger": str(1_000_000_000_000_000 + unique % 10**15),
            "line": "U" + uuid.uuid4().hex,
        }[channel]
        return Customer(channel, address, name)

    def write(self, customer: Customer, body: str) -> bool:
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            if customer.channel in ("sms", "whatsapp"):
                code = send.send_twilio(
                    self.url, customer.channel, customer.address, "+14155238886", body, customer.name
                )
            elif customer.channel == "email":
                sender = f"{customer.name} <{customer.address}>"
                code = send.send_email(self.url, sender, "support@omnihub.local", "Help", body)
            else:
                code = send.send_chat_app(self.url, customer.channel, customer.address, body, customer.name, None)
        self.count(f"messages.{customer.channel}")
        return code == 0

    def find_conversation(self, customer: Customer) -> str | None:
        if customer.conversation_id:
            return customer.conversation_id
        query = {
            "sms": f"phone={urllib.request.quote(customer.address)}",
            "whatsapp": f"phone={urllib.request.quote(customer.address)}",
            "email": f"email={urllib.request.quote(customer.address)}",
        }.get(customer.channel, f"channel={customer.channel}&address={urllib.request.quote(customer.address)}")
        status, body = self.call("GET", f"/v1/customers?{query}")
        if status == 200 and body and body.get("data"):
            customer.conversation_id = body["data"][0].get("conversation_id")
        return customer.conversation_id

    # --- Agents ----------------------------------------------------------------------------------

    def sign_on(self) -> None:
        for agent_id, profile in AGENTS.items():
            status, body = self.call("PUT", f"/v1/agents/{agent_id}", {**profile, "capacity": CAPACITY})
            if status not in (200, 201):
                raise SystemExit(f"could not register agent {agent_id}: {status} {body}")
            self.set_status(agent_id, "available")
        print(f"agents available: {', '.join(AGENTS)}")

    def set_status(self, agent_id: str, status: str) -> None:
        self.call("POST", f"/v1/agents/{agent_id}/status", {"status": status})

    def work(self, now: float, by_conversation: dict[str, Customer]) -> None:
        """One round for every agent: answer offers, reply to new conversations, resolve done ones."""
        for agent_id in AGENTS:
            status, agent = self.call("GET", f"/v1/agents/{agent_id}")
            if status != 200 or not agent:
                continue
            for offer_id in agent.get("offer_ids") or []:
                if self.rng.random() < 0.1:
                    self.call("POST", f"/v1/offers/{offer_id}/reject")
                    self.count("offers.rejected")
                else:
                    self.call("POST", f"/v1/offers/{offer_id}/accept")
                    self.count("offers.accepted")
            for conversation_id in agent.get("conversation_ids") or []:
                customer = by_conversation.get(conversation_id)
                if customer is None:
                    continue
                self.handle(agent_id, conversation_id, customer, now)

    def handle(self, agent_id: str, conversation_id: str, customer: Customer, now: float) -> None:
        if customer.replied_at is None:
            if self.rng.random() < 0.5:
                return  # not every agent answers in the first second
            reply = {"agent_id": agent_id, "body": self.rng.choice(REPLIES)}
            status, _ = self.call(
                "POST",
                f"/v1/conversations/{conversation_id}/messages",
                reply,
                {"Idempotency-Key": f"demo-{uuid.uuid4().hex}"},
            )
            if status == 201:
                customer.replied_at = now
                customer.resolve_after = now + self.rng.uniform(3, 10)
                self.count("replies")
            else:
                self.count(f"replies.refused.{status}")
            return
        if not customer.followed_up and self.rng.random() < 0.3:
            customer.followed_up = True
            self.write(customer, self.rng.choice(FOLLOW_UPS))
            return
        if now >= customer.resolve_after:
            if self.stats.get("transfers", 0) == 0 and agent_id == "alan":
                status, _ = self.call("POST", f"/v1/conversations/{conversation_id}/transfer", {"agent_id": "ada"})
                if status == 200:
                    self.count("transfers")
                    customer.replied_at = None
                    return
            status, _ = self.call("POST", f"/v1/conversations/{conversation_id}/resolve")
            if status == 200:
                self.count("resolved")
                customer.resolve_after = float("inf")

    # --- A handoff link ------------------------------------------------------------------------------

    def handoff(self, customer: Customer) -> None:
        """Invite a customer to Telegram and follow the link there (the code, as t.me's /start sends it)."""
        conversation_id = self.find_conversation(customer)
        if not conversation_id:
            return
        status, body = self.call(
            "POST",
            f"/v1/conversations/{conversation_id}/links",
            {"target": "telegram", "agent_id": "grace"},
            {"Idempotency-Key": f"demo-link-{uuid.uuid4().hex}"},
        )
        code = (body or {}).get("code") if status == 201 else None
        if not code:
            print(f"handoff link skipped ({status})")
            return
        moved = Customer("telegram", str(100_000_000 + uuid.uuid4().int % 900_000_000), customer.name)
        moved.conversation_id = conversation_id
        if self.write(moved, f"/start {code}"):
            self.count("handoffs")
            print(f"\n{customer.name} followed a handoff link from {customer.channel} to telegram")

    # --- The run --------------------------------------------------------------------------------------

    def run(self, customers: int, seconds: float) -> None:
        self.sign_on()
        started = time.monotonic()
        arrivals = sorted(self.rng.uniform(0, seconds * 0.75) for _ in range(customers))
        waiting_tail = max(2, customers // 8)  # the last few arrive after the agents step away
        by_conversation: dict[str, Customer] = {}
        next_index = 0
        away = False
        linked = False
        while True:
            now = time.monotonic() - started
            while next_index < len(arrivals) and arrivals[next_index] <= now:
                customer = self.new_customer(next_index)
                opener = self.rng.choice(OPENERS).format(n=self.rng.randint(100, 999))
                if self.write(customer, opener):
                    self.customers.append(customer)
                next_index += 1
            for customer in self.customers:
                if customer.conversation_id is None and self.find_conversation(customer):
                    by_conversation[str(customer.conversation_id)] = customer
            if not linked and now > seconds * 0.3:
                candidates = [c for c in self.customers if c.channel in ("sms", "email") and c.conversation_id]
                if candidates:
                    linked = True
                    self.handoff(candidates[0])
            if not away and next_index >= len(arrivals) - waiting_tail:
                away = True
                for agent_id in ("alan", "ada"):
                    self.set_status(agent_id, "away")
                print("\nalan and ada stepped away: the last customers wait in the queue")
            self.work(now, by_conversation)
            if now >= seconds and next_index >= len(arrivals):
                break
            self.progress(now, seconds)
            time.sleep(0.5)
        print()
        figures = ", ".join(f"{name} {value}" for name, value in sorted(self.stats.items()))
        print(f"done: {len(self.customers)} customers; {figures}")
        print(f"open {self.url}/dashboard and sign in with the API key")

    def progress(self, now: float, seconds: float) -> None:
        done = min(1.0, now / seconds)
        bar = "#" * int(done * 30)
        resolved = self.stats.get("resolved", 0)
        print(f"\r[{bar:<30}] {int(now):3d}s  customers {len(self.customers)}  resolved {resolved}", end="", flush=True)


def wait_healthy(url: str, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            pass
        time.sleep(0.3)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")
    parser.add_argument("--key", default=os.environ.get("HUB_API_KEY") or send.LOCAL_DEFAULTS["HUB_API_KEY"])
    parser.add_argument("--customers", type=int, default=24, help="how many customers write in (default 24)")
    parser.add_argument("--seconds", type=float, default=50, help="how long the day is squeezed into (default 50)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    if not wait_healthy(url):
        print(f"no hub answers at {url}/health: start it with `make run` first", file=sys.stderr)
        return 1
    Demo(url, args.key, random.Random(args.seed)).run(max(1, args.customers), max(5.0, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
