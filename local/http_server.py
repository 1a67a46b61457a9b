"""Serves the Chalice app over HTTP as API Gateway would, with the gateway responses the
deployed API is configured with: unknown routes answer 404 in the hub's error shape (API
Gateway's default is a 403 "Missing Authentication Token"), and requests that API Gateway
itself would refuse (bad Content-Length, chunked bodies, oversize) never reach the app.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from chalice.config import Config
from chalice.local import ChaliceRequestHandler, ForbiddenError, LocalDevServer, LocalGatewayException

# API Gateway's own limit on a request payload.
GATEWAY_MAX_BODY = 10 * 1024 * 1024
# How often the serving loop looks for a shutdown request: Ctrl-C must stop `make run` promptly.
SERVE_POLL_SECONDS = 0.05


def _error(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


class HubRequestHandler(ChaliceRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """The app logs every request as JSON; the stdlib's line per request would repeat it."""

    def _reply(self, status: int, body: bytes) -> None:
        self.close_connection = True
        self._send_http_response(status, {"Content-Type": "application/json", "Connection": "close"}, body)

    def _generic_handle(self) -> None:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._reply(411, _error("length_required", "send the body with a Content-Length header"))
            return
        raw_length = self.headers.get("content-length", "0").strip() or "0"
        if not raw_length.isdigit():
            self._reply(400, _error("invalid_request", "Content-Length is not a number"))
            return
        length = int(raw_length)
        if length > GATEWAY_MAX_BODY:
            self._reply(413, _error("payload_too_large", f"request body exceeds {GATEWAY_MAX_BODY} bytes"))
            return
        body = self.rfile.read(length) if length else None
        headers = dict(self.headers)
        try:
            response = self.local_gateway.handle_request(
                method=self.command, path=self.path, headers=headers, body=body
            )
        except ForbiddenError:
            path = self.path.split("?", 1)[0]
            self._reply(404, _error("not_found", f"no route {self.command} {path}"))
            return
        except LocalGatewayException as exc:
            self._send_error_response(exc)
            return
        response_headers = response["headers"].copy()
        response_headers.update(response["multiValueHeaders"])
        response = self._handle_binary(response)
        self._send_http_response(response["statusCode"], response_headers, response["body"])

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _generic_handle


def per_thread_request_state(app: Any) -> None:
    """Chalice keeps the current request and Lambda context on the app object. Lambda runs one
    request per process at a time, but this server runs each request on its own thread (and web
    chat long polls overlap every other request), so keep both per thread: otherwise a view can
    read another thread's request."""
    state = threading.local()

    def per_thread(name: str) -> property:
        return property(lambda self: getattr(state, name, None), lambda self, value: setattr(state, name, value))

    cls = type(app)
    if not getattr(cls, "_per_thread_request_state", False):
        app.__class__ = type(
            cls.__name__,
            (cls,),
            {
                "_per_thread_request_state": True,
                "current_request": per_thread("current_request"),
                "lambda_context": per_thread("lambda_context"),
            },
        )


class HttpServer:
    def __init__(self, app: Any, host: str, port: int) -> None:
        per_thread_request_state(app)
        config = Config.create(chalice_stage="local", app_name="omnihub", lambda_timeout=30)
        self._server = LocalDevServer(app, config, host, port, handler_cls=HubRequestHandler)
        # Request threads are daemons (chalice's ThreadedHTTPServer), so a web chat long poll (up
        # to 25 s) never holds up stopping; a short poll interval makes shutdown() prompt.
        self._thread = threading.Thread(
            target=self._server.server.serve_forever,
            kwargs={"poll_interval": SERVE_POLL_SECONDS},
            name="http",
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server.server_address[1])

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop accepting requests and close the socket. Requests under way (long polls) are
        abandoned, not waited for; `timeout` is accepted for symmetry with the other parts."""
        if self._thread.is_alive():
            self._server.shutdown()  # returns within one poll interval
        self._server.server.server_close()
