"""Routing benchmark: AWS requests per assignment, accept latency, assignments per second, invariants.

Run from the repo root: `.venv/bin/python bench/routing.py [--agents N] [--available K]
[--capacity C] [--conversations M] [--check]`. See bench/README.md. The last line printed is a
JSON object of the headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from common import (
    DRAIN_TIMEOUT,
    MESSAGING_PATH,
    REQUEST_TIMEOUT,
    ROOT,
    QueueWatcher,
    RequestCounter,
    Sent,
    inbound_params,
    percentile,
    report_checks,
    running_stack,
    speed_up_emulator,
    wait_healthy,
)

NUMBER_PREFIX = "+1501714"  # one new customer per conversation: +15017140000, +15017140001, ...
MAX_CONVERSATIONS = 10_000
MAX_AGENTS = 50_000
IMPORT_BATCH = 500  # agents per store.agents.import_agents call (BatchWriteItem: 25 items a request)
# The rest of the roster: skills and channels vary, and none of them takes the benchmark's sms
# conversations (offline or away, or available on other channels only).
OTHER_CHANNELS = ("whatsapp", "email", "webchat", "messenger", "telegram")
SKILLS = ("billing", "returns", "spanish", "french", "technical", "vip")
MAX_CAPACITY = 100  # the hub's own limit per channel
CHANNEL = "sms"

# No agent auto-accepts (that is the agent profile's `auto_accept`, false here) and offers last
# far longer than the run, so every offer stays pending until this benchmark accepts it.
ROUTING_CONFIG = {"offer_timeout_seconds": 300}

ROUTING_THREAD = "worker-omnihub-routing"
HTTP_THREAD_MARK = "process_request_thread"  # Chalice's local server: one thread per request
API_THREADS = 4  # agents accepting, resolving and reading at once

POLL_INTERVAL = 0.1
OFFERS_TIMEOUT = 60.0  # phase 1: every first message has its offer...
QUIET_SECONDS = 3.0  # ...unless the routing worker has had nothing to do for this long
STALL_SECONDS = 30.0  # phase 2: give up when nothing happens for this long
PHASE2_SECONDS_PER_CONVERSATION = 1.0  # phase 2's deadline: 30 s plus this per conversation

# The operations the docstring's itemisation may name.
OPERATION = re.compile(
    r"\b(GetItem|PutItem|UpdateItem|DeleteItem|Query|Scan|TransactWriteItems|TransactGetItems|"
    r"BatchGetItem|BatchWriteItem|SendMessageBatch|SendMessage)\b"
)
CLAIM_TOTAL = re.compile(r"=\s*(\d+)(?:\s+to\s+(\d+))?\s+requests")


# --- AWS request counting -------------------------------------------------------------------------


def thread_role() -> str:
    """Each worker by its thread name (`worker-omnihub-routing`, `worker-omnihub-timers`,
    `worker-omnihub-crm-events`), `http` (webhooks and REST API: Chalice's local server runs each
    request on its own thread) and `other`. The workers' own ReceiveMessage/DeleteMessageBatch use a
    client that aws.session() did not make, as Lambda's event source would, so they are not seen."""
    name = threading.current_thread().name
    if name.startswith("worker-"):
        return name
    return "http" if HTTP_THREAD_MARK in name else "other"


def _total(counter: Counter[str]) -> int:
    return sum(counter.values())


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{op} {count}" for op, count in sorted(counter.items())) or "none"


def _per(counter: Counter[str], n: int) -> str:
    if not counter or n <= 0:
        return "none"
    return ", ".join(f"{op} {count / n:.2f}" for op, count in sorted(counter.items()))


# --- The docstring's claim --------------------------------------------------------------------------


@dataclass
class Claim:
    low: int
    high: int
    operations: Counter[str]
    text: str


def docstring_claim() -> Claim | None:
    """What chalicelib/services/routing.py's docstring says one assignment costs: its total
    ("= 9 to 10 requests") and each operation its itemisation names, one request per mention."""
    from chalicelib.services import routing

    doc = routing.__doc__ or ""
    start = doc.find("AWS requests for one assignment")
    total = CLAIM_TOTAL.search(doc, start) if start >= 0 else None
    if total is None:
        return None
    operations: Counter[str] = Counter()
    for line in doc[start : total.start()].splitlines()[1:]:
        for name in OPERATION.findall(line):
            operations[f"{'sqs' if name.startswith('SendMessage') else 'dynamodb'}.{name}"] += 1
    end = doc.find("\n", total.start())
    text = doc[total.start() : end if end >= 0 else len(doc)].strip()
    return Claim(int(total.group(1)), int(total.group(2) or total.group(1)), operations, text)


# --- The hub over HTTP ----------------------------------------------------------------------------


class Api:
    """The CRM's side: Bearer-authenticated JSON calls, from any thread; failures counted by route."""

    def __init__(self, stack: Any) -> None:
        import requests

        self._requests = requests
        self._base = stack.url
        self._headers = {"Authorization": f"Bearer {stack.settings['HUB_API_KEY']}"}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[Any] = []
        self.failures: Counter[str] = Counter()
        self.latencies: defaultdict[str, list[float]] = defaultdict(list)

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._requests.Session()
            session.trust_env = False  # no proxies: 127.0.0.1 only
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def call(
        self, method: str, path: str, route: str, body: Any = None, expect: tuple[int, ...] = (200,)
    ) -> dict[str, Any] | None:
        name = f"{method} {route}"
        started = time.perf_counter()
        try:
            response = self._session().request(
                method, self._base + path, json=body, headers=self._headers, timeout=REQUEST_TIMEOUT
            )
            data = response.json() if response.content else {}
        except (self._requests.RequestException, ValueError) as exc:
            with self._lock:
                self.failures[f"{name}: {type(exc).__name__}"] += 1
            return None
        elapsed = time.perf_counter() - started
        with self._lock:
            self.latencies[name].append(elapsed)
            if response.status_code not in expect:
                self.failures[f"{name}: HTTP {response.status_code}"] += 1
        return data if response.status_code in expect else None

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()


class Inbound:
    """The provider's side: signed Twilio webhooks, sent one at a time from the benchmark's thread."""

    def __init__(self, stack: Any) -> None:
        import requests

        from tests.support.twilio_signature import sign_form

        self._requests = requests
        self._sign = sign_form
        self._session = requests.Session()
        self._session.trust_env = False  # no proxies: 127.0.0.1 only
        # The URL as the hub reconstructs it from PUBLIC_BASE_URL: that is what Twilio signs.
        self._signed_url = stack.settings["PUBLIC_BASE_URL"].rstrip("/") + MESSAGING_PATH
        self._post_url = stack.url + MESSAGING_PATH
        self._token = stack.settings["TWILIO_AUTH_TOKEN"]
        self.sent = Sent()

    def send(self, number: str) -> None:
        params = inbound_params(number, "Hello, I need help with my order")
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": self._sign(self._signed_url, params, self._token),
        }
        started = time.perf_counter()
        try:
            response = self._session.post(
                self._post_url, data=urlencode(params), headers=headers, timeout=REQUEST_TIMEOUT
            )
            outcome = None if response.status_code == 200 else f"HTTP {response.status_code}"
        except self._requests.RequestException as exc:
            outcome = type(exc).__name__
        elapsed = time.perf_counter() - started
        self.sent.wall_seconds += elapsed
        if outcome is None:
            self.sent.latencies.append(elapsed)
        else:
            self.sent.failures[outcome] += 1

    def take(self) -> Sent:
        """What was sent since the last call."""
        sent, self.sent = self.sent, Sent()
        return sent

    def close(self) -> None:
        self._session.close()


@dataclass
class Board:
    """One GET /v1/agents: a consistent snapshot (one Query) of every agent's load."""

    agents: list[dict[str, Any]]

    def offers(self) -> dict[str, str]:
        """Pending offer id -> agent id."""
        return {offer_id: agent["id"] for agent in self.agents for offer_id in agent["offer_ids"]}

    def held(self) -> dict[str, list[str]]:
        """Assigned conversation id -> the agents holding it (one, if all is well)."""
        holders: defaultdict[str, list[str]] = defaultdict(list)
        for agent in self.agents:
            for conversation_id in agent["conversation_ids"]:
                holders[conversation_id].append(agent["id"])
        return holders

    def over_capacity(self) -> list[str]:
        return [
            f"{agent['id']} {channel} {load}/{agent['capacity'].get(channel, 0)}"
            for agent in self.agents
            for channel, load in agent["load"].items()
            if load > agent["capacity"].get(channel, 0)
        ]

    def load_mismatches(self) -> list[str]:
        """Agents whose load is not the offers plus conversations they hold (one channel here)."""
        return [
            f"agent {agent['id']} has load {agent['load'].get(CHANNEL, 0)} but holds "
            f"{len(agent['offer_ids'])} offers + {len(agent['conversation_ids'])} conversations"
            for agent in self.agents
            if agent["load"].get(CHANNEL, 0) != len(agent["offer_ids"]) + len(agent["conversation_ids"])
        ]


@dataclass
class OfferSeen:
    id: str
    agent_id: str
    conversation_id: str
    created_at: datetime
    waiting_since: datetime | None
    phase: int
    accepted: bool = False

    @property
    def queue_to_offer(self) -> float | None:
        if self.waiting_since is None:
            return None
        return (self.created_at - self.waiting_since).total_seconds()


@dataclass
class Routing:
    """The agents' side, played by the benchmark: every offer it saw, every board it polled."""

    api: Api
    offers: dict[str, OfferSeen] = field(default_factory=dict)
    overloads: list[str] = field(default_factory=list)
    polls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    tracked: list[str] = field(default_factory=list)  # the agents taking the benchmark's conversations

    def board(self) -> Board | None:
        """The tracked agents, one GET each (the rest of a large roster holds nothing)."""
        agents = []
        for agent_id in self.tracked:
            data = self.api.call("GET", f"/v1/agents/{agent_id}", "/v1/agents/{id}")
            if data is None:
                return None
            agents.append(data)
        board = Board(agents)
        self.polls += 1
        self.overloads.extend(board.over_capacity())
        return board

    def inspect(self, offer_id: str, agent_id: str, phase: int) -> OfferSeen | None:
        """Record a new pending offer, with its conversation's waiting_since (gone once accepted)."""
        offer = self.api.call("GET", f"/v1/offers/{offer_id}", "/v1/offers/{id}")
        if offer is None:
            return None
        conversation = self.api.call("GET", f"/v1/conversations/{offer['conversation_id']}", "/v1/conversations/{id}")
        # Every conversation here is a new customer's: it was created when its first message was
        # stored, so created -> offer is the whole wait (the SQS hop and routing included; the
        # hub queues and offers in one step when an agent is free, so waiting_since says ~0).
        waiting_since = (conversation or {}).get("created_at") or (conversation or {}).get("waiting_since")
        seen = OfferSeen(
            id=offer_id,
            agent_id=agent_id,
            conversation_id=offer["conversation_id"],
            created_at=datetime.fromisoformat(offer["created_at"]),
            waiting_since=datetime.fromisoformat(waiting_since) if waiting_since else None,
            phase=phase,
        )
        with self._lock:
            self.offers[offer_id] = seen
        return seen

    def accept(self, seen: OfferSeen) -> None:
        accepted = self.api.call("POST", f"/v1/offers/{seen.id}/accept", "/v1/offers/{id}/accept")
        seen.accepted = accepted is not None and accepted.get("status") == "accepted"

    def take(self, offer_id: str, agent_id: str, phase: int) -> None:
        seen = self.inspect(offer_id, agent_id, phase)
        if seen is not None:
            self.accept(seen)

    def resolve(self, conversation_id: str) -> None:
        self.api.call("POST", f"/v1/conversations/{conversation_id}/resolve", "/v1/conversations/{id}/resolve")

    def in_phase(self, phase: int) -> list[OfferSeen]:
        with self._lock:
            return [seen for seen in self.offers.values() if seen.phase == phase]


def run_all(pool: ThreadPoolExecutor, jobs: list[Callable[[], Any]]) -> list[str]:
    """Run the jobs on the pool and wait for all of them; returns the errors they raised."""
    futures = [pool.submit(job) for job in jobs]
    errors = []
    for future in futures:
        try:
            future.result(timeout=4 * REQUEST_TIMEOUT)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    return errors


# --- Phases ---------------------------------------------------------------------------------------


def register_agents(api: Api, available: int, capacity: int) -> list[str]:
    """The agents who take the benchmark's conversations: registered and made available through
    the API, as a CRM would."""
    ids = []
    for index in range(available):
        agent_id = f"bench-agent-{index:05d}"
        profile = {"name": f"Bench agent {index}", "capacity": {CHANNEL: capacity}, "auto_accept": False}
        api.call("PUT", f"/v1/agents/{agent_id}", "/v1/agents/{id}", profile, expect=(200, 201))
        api.call("POST", f"/v1/agents/{agent_id}/status", "/v1/agents/{id}/status", {"status": "available"})
        ids.append(agent_id)
    return ids


def import_roster(count: int) -> float:
    """The rest of the roster, in batches straight through the store (a contact centre's import):
    a third offline, a third away, a third available on other channels, with varied skills, and
    some with sms capacity while offline or away. Returns the seconds it took."""
    from chalicelib.domain.agents import Agent, AgentStatus
    from chalicelib.domain.messages import utcnow
    from chalicelib.store import agents as agent_store

    started = time.monotonic()
    now = utcnow()
    statuses = (AgentStatus.OFFLINE, AgentStatus.AWAY, AgentStatus.AVAILABLE)
    batch: list[Any] = []
    for index in range(count):
        status = statuses[index % 3]
        channels = {OTHER_CHANNELS[index % len(OTHER_CHANNELS)]: 1 + index % 4}
        if status is not AgentStatus.AVAILABLE and index % 2:
            channels[CHANNEL] = 2  # could take sms, but is not available
        skills = {SKILLS[(index + step) % len(SKILLS)]: 1 + (index + step) % 10 for step in range(index % 4)}
        batch.append(
            Agent(
                id=f"roster-{index:05d}",
                name=f"Roster agent {index}",
                skills=skills,
                capacity=channels,
                status=status,
                status_changed_at=now,
                created_at=now,
                updated_at=now,
            )
        )
        if len(batch) == IMPORT_BATCH:
            agent_store.import_agents(batch)
            batch = []
    if batch:
        agent_store.import_agents(batch)
    return time.monotonic() - started


@dataclass
class PhaseOne:
    slots: int
    sent: Sent
    offers: int
    drained: bool
    calls: dict[str, Counter[str]]
    attempts: dict[str, Counter[str]]
    seconds: float

    @property
    def routing_calls(self) -> Counter[str]:
        return self.calls.get(ROUTING_THREAD, Counter())

    items_read: int = 0

    @property
    def items_per_assignment(self) -> float:
        return self.items_read / self.offers if self.offers else float("inf")

    @property
    def per_assignment(self) -> float:
        """HTTP requests to AWS (retries included) by the routing worker per assignment."""
        attempts = _total(self.attempts.get(ROUTING_THREAD, Counter()))
        return attempts / self.offers if self.offers else float("inf")


def phase_one(
    routing: Routing,
    inbound: Inbound,
    counter: RequestCounter,
    watcher: QueueWatcher,
    pool: ThreadPoolExecutor,
    numbers: list[str],
) -> PhaseOne:
    """Fill every agent's capacity with first messages from new customers; count the routing
    worker's requests until every one of them has its offer."""
    counter.reset()
    started = time.monotonic()
    for number in numbers:
        inbound.send(number)
    deadline = time.monotonic() + OFFERS_TIMEOUT
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        board = routing.board()
        if board is not None and len(board.offers()) >= len(numbers):
            break
        total = counter.total(ROUTING_THREAD)
        if total != last:
            last, quiet_since = total, time.monotonic()
        elif time.monotonic() - quiet_since > QUIET_SECONDS and watcher.pending() == 0:
            break  # nothing left for the routing worker to do: some offers will never come
        time.sleep(POLL_INTERVAL)
    drained = watcher.drain()
    calls, attempts = counter.snapshot()
    items_read = counter.items_read(ROUTING_THREAD)
    seconds = time.monotonic() - started
    board = routing.board()
    offers = sorted(board.offers().items()) if board else []
    run_all(pool, [lambda o=offer_id, a=agent_id: routing.inspect(o, a, 1) for offer_id, agent_id in offers])
    one = PhaseOne(len(numbers), inbound.take(), len(routing.in_phase(1)), drained, calls, attempts, seconds)
    one.items_read = items_read
    return one


@dataclass
class Accepts:
    count: int
    http_calls: Counter[str]


def accept_all(routing: Routing, counter: RequestCounter) -> Accepts:
    """Accept every pending offer, one after another on an otherwise idle hub."""
    pending = [seen for seen in routing.in_phase(1) if not seen.accepted]
    before = counter.snapshot()[0].get("http", Counter())
    for seen in pending:
        routing.accept(seen)
    after = counter.snapshot()[0].get("http", Counter())
    return Accepts(len(pending), after - before)


@dataclass
class PhaseTwo:
    conversations: int
    sent: Sent
    offers: list[OfferSeen]
    seconds: float
    stopped: str | None  # why it ended before every conversation had its offer
    calls: dict[str, Counter[str]]
    errors: list[str]

    @property
    def span(self) -> float:
        moments = sorted(seen.created_at for seen in self.offers)
        return (moments[-1] - moments[0]).total_seconds() if len(moments) > 1 else 0.0

    @property
    def peak_backlog(self) -> int:
        """Most conversations waiting without an offer at any moment (from the hub's timestamps)."""
        changes = sorted(
            change
            for seen in self.offers
            if seen.waiting_since is not None
            for change in ((seen.waiting_since, 1), (seen.created_at, -1))
        )
        peak = waiting = 0
        for _, step in changes:
            waiting += step
            peak = max(peak, waiting)
        return peak

    @property
    def overtaking(self) -> int:
        """Offers that went to a conversation while one queued before it was still waiting (every
        conversation here has the same priority, so the queue should serve them oldest first)."""
        timed = [(seen.waiting_since, seen.created_at) for seen in self.offers if seen.waiting_since is not None]
        return sum(any(other < queued and later > offered for other, later in timed) for queued, offered in timed)

    @property
    def offers_per_second(self) -> float | None:
        """Offers created per second, from the phase's first offer.created to its last."""
        return (len(self.offers) - 1) / self.span if self.span > 0 else None


def phase_two(
    routing: Routing,
    inbound: Inbound,
    counter: RequestCounter,
    pool: ThreadPoolExecutor,
    numbers: list[str],
    first: int,
    burst: int,
) -> PhaseTwo:
    """Rounds: new customers write (`first` of them in the first round, while every slot is taken,
    then `burst` a round), then the agents accept every new offer and resolve every conversation
    they hold (concurrently). The backlog left by the first round drains while messages keep
    arriving; the phase ends once every conversation of the phase has had its offer."""
    counter.reset()
    to_write = deque(numbers)
    started = time.monotonic()
    deadline = started + 30 + PHASE2_SECONDS_PER_CONVERSATION * len(numbers)
    last_progress = started
    stopped: str | None = None
    errors: list[str] = []
    size = first
    while True:
        for _ in range(min(size, len(to_write))):
            inbound.send(to_write.popleft())
        size = burst
        stored = len(inbound.sent.latencies)  # each message answered 200 is a new conversation
        if not to_write and len(routing.in_phase(2)) >= stored:
            break
        if time.monotonic() > deadline:
            stopped = f"deadline ({deadline - started:.0f} s)"
            break
        board = routing.board()
        jobs: list[Callable[[], Any]] = []
        if board is not None:
            jobs += [
                lambda o=offer_id, a=agent_id: routing.take(o, a, 2)
                for offer_id, agent_id in sorted(board.offers().items())
                if offer_id not in routing.offers
            ]
            jobs += [lambda c=conversation_id: routing.resolve(c) for conversation_id in sorted(board.held())]
        errors += run_all(pool, jobs)
        if jobs:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > STALL_SECONDS:
            stopped = f"no offer to accept and nothing to resolve for {STALL_SECONDS:.0f} s"
            break
        else:
            time.sleep(POLL_INTERVAL / 2)
    seconds = time.monotonic() - started
    calls, _ = counter.snapshot()
    sent = inbound.take()
    return PhaseTwo(len(numbers), sent, routing.in_phase(2), seconds, stopped, calls, errors)


# --- Invariants -----------------------------------------------------------------------------------


@dataclass
class Invariants:
    states: Counter[str]  # final state -> conversations
    problems: list[str]
    queues: list[dict[str, Any]]


def verify(routing: Routing, pool: ThreadPoolExecutor, numbers: list[str]) -> Invariants:
    """Every conversation is resolved, assigned or offered, exactly once, after exactly one offer;
    the agents' load matches what they hold; the queues hold only the pending offers' tasks."""
    problems: list[str] = []
    states: Counter[str] = Counter()
    board = routing.board()
    queues = (routing.api.call("GET", "/v1/queues", "/v1/queues") or {}).get("data", [])
    if board is None:
        return Invariants(states, ["GET /v1/agents failed"], queues)
    problems += board.load_mismatches()
    held = board.held()
    pending: defaultdict[str, list[str]] = defaultdict(list)  # conversation id -> pending offer ids
    for offer_id in board.offers():
        seen = routing.offers.get(offer_id)
        if seen is None:
            problems.append(f"pending offer {offer_id} was never seen by the benchmark")
        else:
            pending[seen.conversation_id].append(offer_id)
    offers: defaultdict[str, list[OfferSeen]] = defaultdict(list)  # conversation id -> offers seen
    for seen in routing.offers.values():
        offers[seen.conversation_id].append(seen)

    statuses: dict[str, str] = {}

    def read(conversation_id: str) -> None:
        found = routing.api.call("GET", f"/v1/conversations/{conversation_id}", "/v1/conversations/{id}")
        statuses[conversation_id] = found["status"] if found else "unreadable"

    problems += run_all(pool, [lambda c=conversation_id: read(c) for conversation_id in sorted(offers)])
    for conversation_id, seen in sorted(offers.items()):
        status, holders, offered = (
            statuses.get(conversation_id),
            held.get(conversation_id, []),
            pending.get(conversation_id, []),
        )
        once = len(seen) == 1
        if status == "resolved" and not holders and not offered and once and seen[0].accepted:
            states["resolved"] += 1
        elif status == "assigned" and not offered and once and seen[0].accepted and holders == [seen[0].agent_id]:
            states["assigned"] += 1
        elif status == "waiting" and not holders and once and offered == [seen[0].id]:
            states["offered"] += 1
        else:
            states[f"other ({status})"] += 1
            problems.append(
                f"conversation {conversation_id} is {status}, held by {', '.join(holders) or 'no agent'}, "
                f"with {len(offered)} pending offer(s) and {len(seen)} offer(s) over the run"
            )
    never = len(numbers) - len(offers)
    if never:
        states["never offered"] += never
        problems.append(f"{never} of {len(numbers)} conversations never had an offer")
    waiting = sum(queue.get("waiting", 0) for queue in queues)
    tasks_offered = sum(queue.get("offered", 0) for queue in queues)
    if waiting or tasks_offered != len(board.offers()):
        problems.append(
            f"queues hold {waiting} waiting and {tasks_offered} offered tasks; {len(board.offers())} offers are pending"
        )
    return Invariants(states, problems, queues)


def find_missing(api: Api, numbers: list[str], known: set[str]) -> list[str]:
    """The numbers whose conversation never had an offer (one lookup per number)."""
    missing = []
    for number in numbers:
        found = api.call("GET", f"/v1/customers?phone={number.replace('+', '%2B')}", "/v1/customers?phone=")
        customers = (found or {}).get("data") or []
        if not customers:
            missing.append(f"{number}: no customer")
        elif customers[0].get("conversation_id") not in known:
            missing.append(f"{number}: conversation {customers[0].get('conversation_id')} never offered")
    return missing


# --- Report ---------------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    ms = [value * 1000 for value in values]
    return f"median {statistics.median(ms):.1f}  p95 {percentile(ms, 0.95):.1f}  max {max(ms):.1f} ms"


def _seconds(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.2f}  p95 {percentile(values, 0.95):.2f}  max {max(values):.2f} s"


def print_phase_one(one: PhaseOne, claim: Claim | None, agents: int, capacity: int) -> list[str]:
    """Prints the figures; returns how they differ from the docstring."""
    n = max(1, one.offers)
    print(
        f"\nPhase 1: requests per assignment ({agents} available agents x {capacity} {CHANNEL} slots = {one.slots} "
        f"first messages from new customers, each offered at once; {one.seconds:.1f} s)"
    )
    print(f"  offers created                {one.offers} of {one.slots}")
    total = _total(one.routing_calls) / n
    print(f"  routing worker AWS requests/assignment  {total:.2f}")
    print(f"  routing worker DynamoDB items read/assignment  {one.items_per_assignment:.2f}")
    retried = _total(one.attempts.get(ROUTING_THREAD, Counter())) - _total(one.routing_calls)
    if retried:
        print(f"  routing worker HTTP attempts beyond calls (botocore retries): {retried}")
    differences: list[str] = []
    print(f"    {'operation':<30}{'measured':>10}{'docstring':>11}")
    for op in sorted(set(one.routing_calls) | set(claim.operations if claim else ())):
        measured = one.routing_calls.get(op, 0) / n
        claimed = claim.operations.get(op, 0) if claim else None
        differs = claimed is not None and abs(measured - claimed) > 1e-9
        if differs:
            differences.append(f"{op} {measured:.2f} vs {claimed}")
        shown = "-" if claimed is None else str(claimed)
        print(f"    {op:<30}{measured:>10.2f}{shown:>11}{'  <- differs' if differs else ''}")
    if claim:
        bound = f"{claim.low} to {claim.high}" if claim.low != claim.high else str(claim.high)
        print(f"    {'total':<30}{total:>10.2f}{bound:>11}")
        print(f'  docstring of chalicelib/services/routing.py: "{claim.text}"')
        if not claim.low <= total <= claim.high:
            differences.insert(0, f"total {total:.2f} vs {bound}")
        print("  MISMATCH with the docstring: " + "; ".join(differences) if differences else "  matches the docstring")
    else:
        print("  the docstring of chalicelib/services/routing.py states no request count: nothing to compare")
    for role, counter in sorted(one.calls.items()):
        if role != ROUTING_THREAD and counter:
            note = " (webhooks, and the benchmark's GET /v1/agents polls)" if role == "http" else ""
            print(f"  not counted, {role}{note}: {_per(counter, n)} per assignment")
    if not one.drained:
        print(f"  WARNING: the routing worker had not drained its queue after {DRAIN_TIMEOUT:.0f} s")
    if one.sent.failures:
        print(f"  non-200 webhook responses: {dict(one.sent.failures)}")
    return differences


def print_phase_two(two: PhaseTwo, routing: Routing, accepts: Accepts) -> None:
    latencies = routing.api.latencies
    accept_route = "POST /v1/offers/{id}/accept"
    print(f"\nAccepting the {accepts.count} phase-1 offers, one after another on an idle hub")
    print(f"  accept latency                {_ms(latencies[accept_route][: accepts.count])}")
    print(
        f"  AWS requests/accept (API)     {_total(accepts.http_calls) / max(1, accepts.count):.2f}  "
        f"({_per(accepts.http_calls, accepts.count)})"
    )
    waits = [wait for seen in routing.in_phase(1) if (wait := seen.queue_to_offer) is not None]
    print(f"  stored -> offer (phase 1)     {_seconds(waits)}")

    n = len(two.offers)
    print(
        f"\nPhase 2: throughput ({two.conversations} more new customers write, a round at a time, while the agents "
        f"accept every offer and resolve what they hold; {two.seconds:.1f} s)"
    )
    print(f"  offers created                {n} of {two.conversations}")
    rate = two.offers_per_second
    if rate is not None:
        print(f"  assignments/s                 {rate:.2f}  ({n} offers created over {two.span:.1f} s, first to last)")
    print(f"  peak backlog                  {two.peak_backlog} conversations waiting without an offer at once")
    waits = [wait for seen in two.offers if (wait := seen.queue_to_offer) is not None]
    print(f"  stored -> offer               {_seconds(waits)}")
    print(
        f"  offered out of queue order    {two.overtaking} of {n}  (offered while a conversation queued earlier "
        "was still waiting; not a target)"
    )
    print(f"  accept latency                {_ms(latencies[accept_route][accepts.count :])}")
    print(f"  resolve latency               {_ms(latencies['POST /v1/conversations/{id}/resolve'])}")
    print(f"  webhook latency               {_ms(two.sent.latencies)}")
    routing_calls = two.calls.get(ROUTING_THREAD, Counter())
    print(f"  routing worker AWS requests/assignment  {_total(routing_calls) / max(1, n):.2f}")
    print(f"    (queued on arrival, offered when a resolve frees a slot: {_per(routing_calls, n)})")
    if two.sent.failures:
        print(f"  non-200 webhook responses: {dict(two.sent.failures)}")
    for error in two.errors[:5]:
        print(f"  error: {error}")
    if two.stopped:
        print(f"  WARNING: phase 2 stopped before every conversation had its offer: {two.stopped}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10, help="agents registered in all (N)")
    parser.add_argument(
        "--available",
        type=int,
        default=None,
        help="of them, available on sms and taking the benchmark's conversations (K; default all N)",
    )
    parser.add_argument("--capacity", type=int, default=3, help="sms conversations each agent holds at once")
    parser.add_argument(
        "--conversations", type=int, default=200, help="new conversations in all (phase 1 takes agents x capacity)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    started = time.monotonic()
    args = parser.parse_args(argv)
    if args.available is None:
        args.available = args.agents
    for name in ("agents", "available", "capacity", "conversations"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not args.available <= args.agents <= MAX_AGENTS:
        parser.error(f"--available must be at most --agents, and --agents at most {MAX_AGENTS}")
    if args.capacity > MAX_CAPACITY:
        parser.error(f"--capacity must be at most {MAX_CAPACITY}")
    slots = args.available * args.capacity
    if not slots <= args.conversations <= MAX_CONVERSATIONS:
        parser.error(f"--conversations must be from available x capacity ({slots}) to {MAX_CONVERSATIONS}")
    os.chdir(ROOT)
    # The stack runs in this process and takes its settings from the environment; a non-empty
    # ROUTING_CONFIG wins over any ROUTING_CONFIG_FILE inherited from the shell.
    os.environ["ROUTING_CONFIG"] = json.dumps(ROUTING_CONFIG)

    numbers = [f"{NUMBER_PREFIX}{i:04d}" for i in range(args.conversations)]
    counter = RequestCounter(thread_role)
    speed_up_emulator()  # before running_stack(), whose patch_emulator() it supersedes
    with running_stack() as stack:
        import logging

        import requests

        logging.getLogger("omnihub").setLevel(logging.WARNING)
        counter.install()  # before the first request, so every client the hub makes inherits it
        with requests.Session() as session:
            session.trust_env = False
            wait_healthy(session, stack.url)
        from chalicelib.services.routing_config import routing_config

        config = routing_config()
        claim = docstring_claim()
        watcher = QueueWatcher(stack, lambda: counter.total(ROUTING_THREAD))
        api, inbound = Api(stack), Inbound(stack)
        routing = Routing(api)
        missing: list[str] = []
        try:
            with ThreadPoolExecutor(API_THREADS, thread_name_prefix="bench-api") as pool:
                imported = import_roster(args.agents - args.available)
                routing.tracked = register_agents(api, args.available, args.capacity)
                setup_drained = watcher.drain()
                one = phase_one(routing, inbound, counter, watcher, pool, numbers[:slots])
                accepts = accept_all(routing, counter)
                two = phase_two(routing, inbound, counter, pool, numbers[slots:], first=slots, burst=max(1, slots // 2))
                final_drained = watcher.drain()
                invariants = verify(routing, pool, numbers)
            if invariants.states.get("never offered"):
                missing = find_missing(api, numbers, {seen.conversation_id for seen in routing.offers.values()})
        finally:
            api.close()
            inbound.close()

    print(
        f"Local stack (moto over HTTP, in-process; {args.agents} agents registered, {args.available} of them "
        f"available with {args.capacity} {CHANNEL} slots each; {args.conversations} conversations from new customers)"
    )
    if args.agents > args.available:
        print(
            f"(the other {args.agents - args.available} imported in {imported:.1f} s: offline, away, or available "
            "on other channels only, with varied skills)"
        )
    print(
        f"(routing config: offer_timeout_seconds {config.offer_timeout_seconds}, relax_after_seconds "
        f"{config.relax_after_seconds}; no agent auto-accepts: every offer waits for the benchmark)"
    )
    print("(rates and latencies are the whole pipeline's in one process on moto, which serves DynamoDB")
    print(" requests one at a time: compare runs of this bench with each other, not with AWS)")
    differences = print_phase_one(one, claim, args.available, args.capacity)
    print_phase_two(two, routing, accepts)

    print(f"\nFinal state ({routing.polls} polls of GET /v1/agents over the run)")
    print("  conversations  " + ", ".join(f"{state} {count}" for state, count in sorted(invariants.states.items())))
    for queue in invariants.queues:
        print(f"  queue {queue.get('queue')}: {queue.get('waiting')} waiting, {queue.get('offered')} offered")
    for problem in invariants.problems[:10] + missing[:10]:
        print(f"  problem: {problem}")
    if len(invariants.problems) > 10:
        print(f"  ... and {len(invariants.problems) - 10} more problems")
    if api.failures:
        print(f"  failed API calls: {dict(api.failures)}")
    print("  AWS calls over the whole run, every thread: " + _counts(counter.ever))

    scans = {op: count for op, count in counter.ever.items() if op.endswith(".Scan")}
    offered = one.offers + len(two.offers)
    non_200 = sum(one.sent.failures.values()) + sum(two.sent.failures.values())
    bound = claim.high if claim else None
    drained = setup_drained and one.drained and final_drained
    checks = [
        ("no Scan by any thread over the whole run", not scans, _counts(Counter(scans))),
        (
            f"routing worker AWS requests per assignment <= the docstring's upper bound ({bound})",
            bound is not None and one.per_assignment <= bound,
            f"{one.per_assignment:.2f}" + (f"; differs: {'; '.join(differences)}" if differences else ""),
        ),
        (
            "no agent above capacity in any poll",
            not routing.overloads,
            f"{len(routing.overloads)} over in {routing.polls} polls"
            if routing.overloads
            else f"{routing.polls} polls",
        ),
        (
            "every conversation resolved, assigned or offered, exactly once",
            not invariants.problems,
            ", ".join(f"{state} {count}" for state, count in sorted(invariants.states.items())),
        ),
        ("every conversation got its offer", offered == args.conversations, f"{offered} of {args.conversations}"),
        (
            "every webhook and API call answered as expected",
            non_200 == 0 and not api.failures and not two.errors,
            f"{non_200} webhook non-200, {sum(api.failures.values()) + len(two.errors)} API failures",
        ),
        ("routing worker drained its queue", drained, "yes" if drained else "timed out"),
    ]
    status = report_checks(checks, started, enforce=args.check)
    waits_ms = sorted(wait * 1000 for seen in routing.offers.values() if (wait := seen.queue_to_offer) is not None)
    headline = {
        "agents": args.agents,
        "available": args.available,
        "requests_per_assignment": round(one.per_assignment, 2),
        "items_read_per_assignment": round(one.items_per_assignment, 2),
        "offer_latency_p50_ms": round(percentile(waits_ms, 0.5), 1) if waits_ms else None,
        "offer_latency_p99_ms": round(percentile(waits_ms, 0.99), 1) if waits_ms else None,
    }
    print(json.dumps(headline))
    return status


if __name__ == "__main__":
    sys.exit(main())
