"""The whole hub on one machine: AWS emulator, tables and queues, HTTP server, workers and the
provider sandbox. `make run` starts it; benchmarks start it in-process."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from local.emulator import AwsEmulator, boto3_client, create_resources

# Well-known values for local use only: a deployed hub reads its secrets from SSM.
LOCAL_DEFAULTS = {
    "HUB_API_KEY": "local-dev-api-key",
    "TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000000",
    "TWILIO_AUTH_TOKEN": "local-twilio-auth-token",
    "SENDGRID_INBOUND_TOKEN": "local-sendgrid-inbound-token",
    "SENDGRID_API_KEY": "SG.local-sendgrid-api-key",
    # Senders for agent replies; the provider sandbox accepts them.
    "TWILIO_SMS_FROM": "+15005550006",
    "TWILIO_WHATSAPP_FROM": "+14155238886",
    "SENDGRID_FROM_EMAIL": "support@omnihub.local",
    "LINK_SECRET": "local-link-secret",
    "UNSUBSCRIBE_SECRET": "local-unsubscribe-secret",
    "WEBCHAT_SESSION_SECRET": "local-webchat-session-secret-0123456789",
    "WEBCHAT_JWT_SECRET": "local-webchat-jwt-secret-0123456789abcdef",
    "WEBCHAT_ALLOWED_ORIGINS": "*",
    # Chat apps: the sandbox emulates their send APIs with these credentials.
    "TELEGRAM_SECRET_TOKEN": "local-telegram-secret-token",
    "TELEGRAM_BOT_TOKEN": "7000000001:local-telegram-bot-token",
    "TELEGRAM_BOT_USERNAME": "omnihub_sandbox_bot",
    "META_APP_SECRET": "local-meta-app-secret",
    "META_VERIFY_TOKEN": "local-meta-verify-token",
    "META_ACCESS_TOKEN": "local-meta-access-token",
    "META_WHATSAPP_PHONE_NUMBER_ID": "106540352242922",
    "META_WHATSAPP_NUMBER": "+15550783881",
    "META_PAGE_ID": "107485388405331",
    "META_INSTAGRAM_ACCOUNT_ID": "17841405309211844",
    "LINE_CHANNEL_SECRET": "local-line-channel-secret",
    "LINE_CHANNEL_ACCESS_TOKEN": "local-line-channel-access-token",
    "WECHAT_TOKEN": "local-wechat-token",
    "WECHAT_APP_ID": "wx0123456789abcdef",
    "WECHAT_APP_SECRET": "sandbox-wechat-app-secret",
    # CRM endpoints on this machine are plain http://127.0.0.1 URLs.
    "ALLOW_INSECURE_WEBHOOK_URLS": "true",
}


# (queue URL setting, handler module, function name): the same pairs infra/ wires to Lambda.
WORKERS = (
    ("ROUTING_QUEUE_URL", "handlers.routing", "omnihub-routing"),
    ("TIMER_QUEUE_URL", "handlers.timers", "omnihub-timers"),
    ("CRM_EVENTS_QUEUE_URL", "handlers.crm_events", "omnihub-crm-events"),
)


@dataclass
class LocalStack:
    host: str = "127.0.0.1"
    port: int = 8000
    emulator_port: int = 0
    sandbox_port: int = 0
    environ: dict[str, str] = field(default_factory=dict)
    _parts: list[Any] = field(default_factory=list)

    def start(self) -> LocalStack:
        from local.emulator_speedups import speed_up_emulator

        speed_up_emulator()  # moto's own costs that grow with the table; answers are unchanged
        emulator = AwsEmulator(self.host, self.emulator_port).start()
        self._parts.append(emulator)
        self.emulator_url = emulator.url
        resources = create_resources(emulator.url)
        self._configure_environment(emulator, resources)

        self.sandbox = self._start_sandbox()
        # Imported only now: settings are read from the environment configured above.
        from app import app
        from local.http_server import HttpServer

        self.workers = self._start_workers(emulator.url, resources)
        self.http = HttpServer(app, self.host, self.port).start()
        self._parts.append(self.http)
        self.port = self.http.port
        self.url = f"http://{self.host}:{self.port}"
        return self

    def _start_workers(self, emulator_url: str, resources: dict[str, str]) -> list[Any]:
        """One worker per queue, each calling its handlers/ function as Lambda's event source would."""
        import importlib

        from local.worker import QueueWorker

        workers = []
        for queue_env, module, function_name in WORKERS:
            handler = importlib.import_module(module).handler
            worker = QueueWorker(
                boto3_client("sqs", emulator_url),
                resources[queue_env],
                resources[queue_env.replace("_URL", "_ARN")],
                handler,
                function_name,
            )
            worker.start()
            self._parts.append(worker)
            workers.append(worker)
        return workers

    def _configure_environment(self, emulator: AwsEmulator, resources: dict[str, str]) -> None:
        values = {**emulator.environment(), **resources}
        for name, default in LOCAL_DEFAULTS.items():
            values[name] = os.environ.get(name) or default
        values["PUBLIC_BASE_URL"] = os.environ.get("PUBLIC_BASE_URL") or f"http://{self.host}:{self.port}"
        values["POWERTOOLS_METRICS_DISABLED"] = os.environ.get("POWERTOOLS_METRICS_DISABLED", "true")  # EMF: noise here
        values.update(self.environ)
        os.environ.update(values)
        self.settings = values

    def _start_sandbox(self) -> Any:
        from local.sandbox import ProviderSandbox

        sandbox = ProviderSandbox(
            self.host,
            self.sandbox_port,
            twilio_account_sid=self.settings["TWILIO_ACCOUNT_SID"],
            twilio_auth_token=self.settings["TWILIO_AUTH_TOKEN"],
            sendgrid_api_key=self.settings["SENDGRID_API_KEY"],
        )
        sandbox.start()
        self._parts.append(sandbox)
        for name in ("TWILIO_API_BASE_URL", "SENDGRID_API_BASE_URL"):
            os.environ.setdefault(name, sandbox.url)
            self.settings[name] = os.environ[name]
        for base_url_setting, emulator in self._chat_emulators():
            sandbox.add_emulator(emulator)
            os.environ.setdefault(base_url_setting, sandbox.url_for(emulator.prefix))
            self.settings[base_url_setting] = os.environ[base_url_setting]
        return sandbox

    def _chat_emulators(self) -> list[tuple[str, Any]]:
        """(base URL setting, emulator) for each chat app the sandbox stands in for."""
        from local.chat_sandbox.line import LineEmulator
        from local.chat_sandbox.meta import MetaEmulator
        from local.chat_sandbox.telegram import TelegramEmulator
        from local.chat_sandbox.wechat import WeChatEmulator

        meta = MetaEmulator(
            access_token=self.settings["META_ACCESS_TOKEN"],
            phone_number_id=self.settings["META_WHATSAPP_PHONE_NUMBER_ID"],
            page_id=self.settings["META_PAGE_ID"],
            instagram_account_id=self.settings["META_INSTAGRAM_ACCOUNT_ID"],
            app_secret=self.settings["META_APP_SECRET"],
            webhook_url=lambda: f"{self.url}/webhooks/meta",  # known once the HTTP server is up
            report_delivery=True,
        )
        return [
            ("META_GRAPH_BASE_URL", meta),
            (
                "TELEGRAM_API_BASE_URL",
                TelegramEmulator(self.settings["TELEGRAM_BOT_TOKEN"], username=self.settings["TELEGRAM_BOT_USERNAME"]),
            ),
            ("LINE_API_BASE_URL", LineEmulator(self.settings["LINE_CHANNEL_ACCESS_TOKEN"])),
            ("WECHAT_API_BASE_URL", WeChatEmulator(self.settings["WECHAT_APP_ID"], self.settings["WECHAT_APP_SECRET"])),
        ]

    def stop(self, timeout: float | None = None) -> None:
        """Stop every part, newest first: the HTTP server, the workers, the sandbox, the emulator.

        All workers are told to stop before any is waited for, so their batches under way wind
        down together. Without `timeout` each part waits for its own work under way as long as
        it usually does (a worker up to 5 s); with it, all the waiting shares that many seconds
        and whatever is still running after that (a handler mid-batch, a long poll, a status
        callback) is left to daemon threads that end with the process. SQS redelivers the
        abandoned batches, as it would after a Lambda timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        parts, self._parts = list(reversed(self._parts)), []
        for part in parts:
            request_stop = getattr(part, "request_stop", None)
            if request_stop is not None:
                request_stop()
        for part in parts:
            if deadline is None:
                part.stop()
            else:
                part.stop(timeout=max(0.0, deadline - time.monotonic()))
