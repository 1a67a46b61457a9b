"""The whole hub on one machine: AWS emulator, tables and queues, HTTP server, workers and the
provider sandbox. `make run` starts it; benchmarks start it in-process."""

from __future__ import annotations

import os
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
        return sandbox

    def stop(self) -> None:
        for part in reversed(self._parts):
            part.stop()
        self._parts.clear()
