"""omnihub's HTTP edge: provider webhooks and the REST API for CRMs.

Each route reads the request, calls one function in chalicelib, and shapes the answer. Service
modules are imported inside the routes so a cold start pays only for what its first request uses
(see bench/ for the figures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice import Chalice, Response

from chalicelib.http.errors import bad_request, guarded
from chalicelib.http.middleware import edge
from chalicelib.http.requests import json_object, query_value, webhook_request

app = Chalice(app_name="omnihub", configure_logs=False)
app.api.binary_types.append("multipart/form-data")
app.register_middleware(edge, "http")


def route(path: str, **options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        return app.route(path, **options)(guarded(view))

    return register


@route("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


# --- Provider webhooks -------------------------------------------------------------------------


# Every provider's channel module verifies and parses its webhook (channels/registry.py names the
# contract); services/webhook_intake.py files what it found. One route per provider endpoint.
TWILIO_TYPES = ["application/x-www-form-urlencoded", "application/json"]
JSON_TYPES = ["application/json"]
XML_TYPES = ["text/xml", "application/xml"]


def channel_webhook(provider: str) -> Response:
    from chalicelib.channels import registry
    from chalicelib.services import webhook_intake

    channel = registry.channel(provider)
    request = webhook_request(app.current_request)
    channel.verify(request)
    outcome = webhook_intake.process(channel.parse(request))
    return Response(body=channel.acknowledgement(outcome), headers={"Content-Type": channel.ACKNOWLEDGEMENT_TYPE})


def channel_handshake(provider: str) -> Response:
    """The GET a provider sends to prove the URL is ours (Meta's hub.challenge, WeChat's echostr)."""
    from chalicelib.channels import registry

    answer = registry.channel(provider).handshake(webhook_request(app.current_request))
    return Response(body=answer, headers={"Content-Type": "text/plain; charset=utf-8"})


@route("/webhooks/twilio/messaging", methods=["POST"], content_types=TWILIO_TYPES)
def twilio_messaging() -> Response:
    return channel_webhook("twilio")


@route("/webhooks/twilio/status", methods=["POST"], content_types=TWILIO_TYPES)
def twilio_status() -> Response:
    return channel_webhook("twilio")


@route("/webhooks/sendgrid/inbound", methods=["POST"], content_types=["multipart/form-data"])
def sendgrid_inbound() -> Response:
    return channel_webhook("sendgrid")


@route("/webhooks/meta", methods=["GET"])
def meta_verification() -> Response:
    return channel_handshake("meta")


@route("/webhooks/meta", methods=["POST"], content_types=JSON_TYPES)
def meta_webhook() -> Response:
    return channel_webhook("meta")


@route("/webhooks/telegram", methods=["POST"], content_types=JSON_TYPES)
def telegram_webhook() -> Response:
    return channel_webhook("telegram")


@route("/webhooks/line", methods=["POST"], content_types=JSON_TYPES)
def line_webhook() -> Response:
    return channel_webhook("line")


@route("/webhooks/wechat", methods=["GET"])
def wechat_verification() -> Response:
    return channel_handshake("wechat")


@route("/webhooks/wechat", methods=["POST"], content_types=XML_TYPES)
def wechat_webhook() -> Response:
    return channel_webhook("wechat")


# --- REST API for CRMs (Bearer auth in the edge middleware) -----------------------------------


@route("/v1/customers")
def find_customers() -> dict[str, Any]:
    from chalicelib.api.models import customer_view
    from chalicelib.services.customers import find_customer

    request = app.current_request
    phone, email = query_value(request, "phone"), query_value(request, "email")
    channel, address = query_value(request, "channel"), query_value(request, "address")
    if (channel is None) != (address is None):
        raise bad_request("'channel' and 'address' go together: give both")
    if [phone, email, channel].count(None) != 2:
        raise bad_request("give exactly one of 'phone', 'email', or 'channel' with 'address'")
    customer = find_customer(phone=phone, email=email, channel=channel, address=address)
    return {"data": [customer_view(customer)] if customer else []}


@route("/v1/customers/{customer_id}")
def get_customer(customer_id: str) -> dict[str, Any]:
    from chalicelib.api.models import customer_view
    from chalicelib.services import customers

    return customer_view(customers.get_customer(customer_id))


@route("/v1/customers/{customer_id}", methods=["PATCH"])
def patch_customer(customer_id: str) -> dict[str, Any]:
    from chalicelib.api.models import CustomerPatch, customer_view
    from chalicelib.services import customers

    patch = CustomerPatch.model_validate(json_object(app.current_request))
    return customer_view(customers.patch_customer(customer_id, patch))


@route("/v1/customers/{customer_id}/conversation")
def get_customer_conversation(customer_id: str) -> dict[str, Any]:
    from chalicelib.api.models import conversation_view
    from chalicelib.services import customers

    customer = customers.get_customer(customer_id)
    return conversation_view(customers.get_conversation(customer.conversation_id))


@route("/v1/conversations/{conversation_id}")
def get_conversation(conversation_id: str) -> dict[str, Any]:
    from chalicelib.api.models import conversation_view
    from chalicelib.services import customers

    return conversation_view(customers.get_conversation(conversation_id))


@route("/v1/conversations/{conversation_id}/messages")
def list_messages(conversation_id: str) -> dict[str, Any]:
    from chalicelib.api.models import message_view
    from chalicelib.services import customers

    request = app.current_request
    limit = _page_size(query_value(request, "limit"))
    messages, next_cursor = customers.list_messages(conversation_id, limit, query_value(request, "cursor"))
    return {"data": [message_view(message) for message in messages], "next_cursor": next_cursor}


@route("/v1/conversations/{conversation_id}/handoff")
def get_handoff(conversation_id: str) -> dict[str, Any]:
    from chalicelib.services import handoff

    return handoff.packet(conversation_id)


@route("/v1/conversations/{conversation_id}/control", methods=["POST"])
def change_control(conversation_id: str) -> dict[str, Any]:
    from chalicelib.api.models import conversation_view
    from chalicelib.domain.control import ControlRequest
    from chalicelib.services import control

    request = ControlRequest.model_validate(json_object(app.current_request))
    return conversation_view(control.change(conversation_id, request))


@route("/v1/conversations/{conversation_id}/links", methods=["POST"])
def create_link(conversation_id: str) -> Response:
    from chalicelib.http import links

    request = app.current_request
    answer = links.create_link(conversation_id, json_object(request), request.headers.get("idempotency-key"))
    return Response(body=answer.body, status_code=answer.status_code, headers=answer.headers)


@route("/v1/customers/{customer_id}/identity-history")
def identity_history(customer_id: str) -> dict[str, Any]:
    from chalicelib.services import customers, link_redemption

    customers.get_customer(customer_id)
    return {"data": link_redemption.identity_history(customer_id)}


# --- Agents, offers and routing ----------------------------------------------------------------


@route("/v1/agents/{agent_id}", methods=["PUT"])
def put_agent(agent_id: str) -> Response:
    from chalicelib.api.models import agent_view
    from chalicelib.domain.agents import AgentProfile
    from chalicelib.services import agents

    agent, created = agents.put_agent(agent_id, AgentProfile.model_validate(json_object(app.current_request)))
    return Response(body=agent_view(agent), status_code=201 if created else 200)


@route("/v1/agents")
def list_agents() -> dict[str, Any]:
    from chalicelib.api.models import agent_view
    from chalicelib.services import agents

    request = app.current_request
    limit = _page_size(query_value(request, "limit"), default=100, maximum=100)
    page, next_cursor = agents.list_agents(limit, query_value(request, "cursor"))
    return {"data": [agent_view(agent) for agent in page], "next_cursor": next_cursor}


@route("/v1/agents/{agent_id}")
def get_agent(agent_id: str) -> dict[str, Any]:
    from chalicelib.api.models import agent_view
    from chalicelib.services import agents

    return agent_view(agents.get_agent(agent_id))


@route("/v1/agents/{agent_id}", methods=["DELETE"])
def delete_agent(agent_id: str) -> Response:
    from chalicelib.services import agents

    agents.delete_agent(agent_id)
    return Response(body="", status_code=204)


@route("/v1/agents/{agent_id}/status", methods=["POST"])
def set_agent_status(agent_id: str) -> dict[str, Any]:
    from chalicelib.api.models import AgentStatusChange, agent_view
    from chalicelib.services import routing

    change = AgentStatusChange.model_validate(json_object(app.current_request))
    return agent_view(routing.set_agent_status(agent_id, change.status))


@route("/v1/offers/{offer_id}")
def get_offer(offer_id: str) -> dict[str, Any]:
    from chalicelib.services import routing

    return routing.get_offer(offer_id)


@route("/v1/offers/{offer_id}/accept", methods=["POST"])
def accept_offer(offer_id: str) -> dict[str, Any]:
    from chalicelib.services import routing

    return routing.accept_offer(offer_id)


@route("/v1/offers/{offer_id}/reject", methods=["POST"])
def reject_offer(offer_id: str) -> dict[str, Any]:
    from chalicelib.services import routing

    return routing.reject_offer(offer_id)


@route("/v1/conversations/{conversation_id}/resolve", methods=["POST"])
def resolve_conversation(conversation_id: str) -> dict[str, Any]:
    from chalicelib.api.models import conversation_view
    from chalicelib.services import routing

    return conversation_view(routing.resolve(conversation_id))


@route("/v1/conversations/{conversation_id}/transfer", methods=["POST"])
def transfer_conversation(conversation_id: str) -> dict[str, Any]:
    from chalicelib.api.models import TransferRequest
    from chalicelib.services import routing

    request = TransferRequest.model_validate(json_object(app.current_request))
    return routing.transfer(conversation_id, request.agent_id, request.skills, request.queue)


@route("/v1/queues")
def list_queues() -> dict[str, Any]:
    from chalicelib.services import routing

    return {"data": routing.queue_stats()}


# --- Analytics (read-only; docs/metrics.md defines every figure) ----------------------------------

ANALYTICS_QUERY = ("from", "to", "tz", "metric", "min", "max", "channel", "queue", "agent", "resolved_by", "cursor")


def _analytics_query(*names: str) -> dict[str, str | None]:
    return {name: query_value(app.current_request, name) for name in names}


@route("/v1/analytics/realtime")
def analytics_realtime() -> dict[str, Any]:
    from chalicelib.services import analytics

    return analytics.realtime()


@route("/v1/analytics/summary")
def analytics_summary() -> dict[str, Any]:
    from chalicelib.services import analytics

    query = _analytics_query("from", "to", "tz", "group_by", "service_level")
    return analytics.summary(query["from"], query["to"], query["tz"], query["group_by"], query["service_level"])


@route("/v1/analytics/cycles")
def analytics_cycles() -> dict[str, Any]:
    from chalicelib.services import analytics

    query = _analytics_query(*ANALYTICS_QUERY, "limit")
    return analytics.cycles(query, limit=_limit(query.pop("limit")))


@route("/v1/analytics/cycles.csv")
def analytics_cycles_csv() -> Response:
    from chalicelib.services import analytics

    body, next_cursor = analytics.cycles_csv(_analytics_query(*ANALYTICS_QUERY))
    headers = {"Content-Type": "text/csv; charset=utf-8", "Content-Disposition": 'attachment; filename="cycles.csv"'}
    if next_cursor:
        headers["X-Next-Cursor"] = next_cursor
    return Response(body=body, headers=headers)


def _limit(value: str | None) -> int:
    if value is None or not value.strip():
        return 50
    if not value.strip().isdigit() or not 1 <= int(value) <= 200:
        raise bad_request("limit: a whole number from 1 to 200")
    return int(value)


# --- Webhook endpoints for CRM events (Standard Webhooks) -------------------------------------


@route("/v1/webhooks", methods=["POST"])
def create_webhook() -> Response:
    from chalicelib.api.webhook_models import WebhookEndpointCreate, endpoint_view
    from chalicelib.services import webhooks

    body = WebhookEndpointCreate.model_validate(json_object(app.current_request))
    endpoint, secret = webhooks.register(body.url, body.events, body.secret, body.description)
    return Response(
        body=endpoint_view(endpoint, secret),
        status_code=201,
        headers={"Content-Type": "application/json", "Location": f"/v1/webhooks/{endpoint.id}"},
    )


@route("/v1/webhooks")
def list_webhooks() -> dict[str, Any]:
    from chalicelib.api.webhook_models import endpoint_view
    from chalicelib.services import webhooks

    return {"data": [endpoint_view(endpoint) for endpoint in webhooks.list_endpoints()]}


@route("/v1/webhooks/{endpoint_id}")
def get_webhook(endpoint_id: str) -> dict[str, Any]:
    from chalicelib.api.webhook_models import endpoint_view
    from chalicelib.services import webhooks

    return endpoint_view(webhooks.get_endpoint(endpoint_id))


@route("/v1/webhooks/{endpoint_id}", methods=["DELETE"])
def delete_webhook(endpoint_id: str) -> Response:
    from chalicelib.services import webhooks

    webhooks.delete(endpoint_id)
    return Response(body="", status_code=204)


# --- Bot integrations (signed webhooks for the conversations a bot controls) -------------------


@route("/v1/integrations", methods=["POST"])
def create_integration() -> Response:
    from chalicelib.api.integration_models import IntegrationCreate, integration_view
    from chalicelib.services import integrations

    body = IntegrationCreate.model_validate(json_object(app.current_request))
    integration, secret = integrations.register(body.name, body.url, body.events, body.secret)
    return Response(
        body=integration_view(integration, secret),
        status_code=201,
        headers={"Content-Type": "application/json", "Location": f"/v1/integrations/{integration.id}"},
    )


@route("/v1/integrations")
def list_integrations() -> dict[str, Any]:
    from chalicelib.api.integration_models import integration_view
    from chalicelib.services import integrations

    return {"data": [integration_view(integration) for integration in integrations.list_integrations()]}


@route("/v1/integrations/{integration_id}")
def get_integration(integration_id: str) -> dict[str, Any]:
    from chalicelib.api.integration_models import integration_view
    from chalicelib.services import integrations

    return integration_view(integrations.get_integration(integration_id))


@route("/v1/integrations/{integration_id}", methods=["DELETE"])
def delete_integration(integration_id: str) -> Response:
    from chalicelib.services import integrations

    integrations.delete(integration_id)
    return Response(body="", status_code=204)


@route("/v1/conversations/{conversation_id}/messages", methods=["POST"])
def send_conversation_message(conversation_id: str) -> Response:
    from chalicelib.http import replies

    request = app.current_request
    answer = replies.send_reply(conversation_id, json_object(request), request.headers.get("idempotency-key"))
    return Response(body=answer.body, status_code=answer.status_code, headers=answer.headers)


# --- The assistant's knowledge base --------------------------------------------------------------


@route("/v1/knowledge/{entry_id}", methods=["PUT"])
def put_knowledge_entry(entry_id: str) -> Response:
    from chalicelib.api.knowledge_models import KnowledgeEntryBody, entry_view
    from chalicelib.services import knowledge

    body = KnowledgeEntryBody.model_validate(json_object(app.current_request))
    entry, created = knowledge.put_entry(entry_id, body)
    return Response(body=entry_view(entry), status_code=201 if created else 200)


@route("/v1/knowledge/{entry_id}")
def get_knowledge_entry(entry_id: str) -> dict[str, Any]:
    from chalicelib.api.knowledge_models import entry_view
    from chalicelib.services import knowledge

    return entry_view(knowledge.get_entry(entry_id))


@route("/v1/knowledge/{entry_id}", methods=["DELETE"])
def delete_knowledge_entry(entry_id: str) -> Response:
    from chalicelib.services import knowledge

    knowledge.delete_entry(entry_id)
    return Response(body="", status_code=204)


@route("/v1/knowledge")
def list_or_search_knowledge() -> dict[str, Any]:
    """With `query`: the matches, best first, with their scores. Without: the entries, by page."""
    from chalicelib.api.knowledge_models import entry_view, match_view
    from chalicelib.services import knowledge

    request = app.current_request
    query, limit = query_value(request, "query"), query_value(request, "limit")
    if query is not None:
        found = knowledge.search(query, query_value(request, "language"), _page_size(limit, default=10, maximum=50))
        return {"data": [match_view(match) for match in found]}
    entries, next_cursor = knowledge.list_entries(_page_size(limit), query_value(request, "cursor"))
    return {"data": [entry_view(entry) for entry in entries], "next_cursor": next_cursor}


# --- Proactive notifications and consent -------------------------------------------------------


@route("/v1/notifications", methods=["POST"])
def create_notification() -> Response:
    from chalicelib.http import notifications

    request = app.current_request
    answer = notifications.create_notification(json_object(request), request.headers.get("idempotency-key"))
    return Response(body=answer.body, status_code=answer.status_code, headers=answer.headers)


@route("/v1/notifications/{notification_id}")
def get_notification(notification_id: str) -> dict[str, Any]:
    from chalicelib.services import notifications

    return notifications.get_notification(notification_id)


# Public (no API key): the signed token is the credential. Mail clients POST RFC 8058's
# "List-Unsubscribe=One-Click" as a form; GET shows a confirm button and changes nothing.
UNSUBSCRIBE_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain", "application/json"]


@route("/unsubscribe/email/{token}", methods=["GET", "POST"], content_types=UNSUBSCRIBE_TYPES)
def unsubscribe_email(token: str) -> Response:
    from chalicelib.http.unsubscribe import unsubscribe_page

    page = unsubscribe_page(token, app.current_request.method)
    return Response(body=page.html, status_code=page.status_code, headers=page.headers)


# --- Web chat (public: the visitor's signed session token, never the API key) -----------------


@route("/webchat")
def webchat_page() -> Response:
    from chalicelib.webchat import edge

    return edge.page(app.current_request)


@route("/webchat/embed.js")
def webchat_embed_script() -> Response:
    from chalicelib.webchat import edge

    return edge.embed_script(app.current_request)


@route("/webchat/sessions", methods=["POST", "OPTIONS"])
def webchat_sessions() -> Response:
    from chalicelib.webchat import edge

    return edge.sessions(app.current_request)


@route("/webchat/messages", methods=["GET", "POST", "OPTIONS"])
def webchat_messages() -> Response:
    from chalicelib.webchat import edge

    return edge.messages(app.current_request, app.lambda_context)


def _page_size(raw: str | None, default: int = 50, maximum: int = 200) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise bad_request(f"'limit' must be a whole number from 1 to {maximum}")
    return int(raw)


# --- Business hours (schedules; routing and auto-replies read them) ----------------------------


@route("/v1/business-hours/{schedule_id}", methods=["PUT"])
def put_business_hours(schedule_id: str) -> Response:
    from chalicelib.api.business_hours_models import schedule_view
    from chalicelib.services import business_hours

    schedule, created = business_hours.put_schedule(schedule_id, json_object(app.current_request))
    return Response(body=schedule_view(schedule), status_code=201 if created else 200)


@route("/v1/business-hours/{schedule_id}")
def get_business_hours(schedule_id: str) -> dict[str, Any]:
    from chalicelib.api.business_hours_models import schedule_view
    from chalicelib.services import business_hours

    return schedule_view(business_hours.get_schedule(schedule_id))


@route("/v1/business-hours/{schedule_id}", methods=["DELETE"])
def delete_business_hours(schedule_id: str) -> Response:
    from chalicelib.services import business_hours

    business_hours.delete_schedule(schedule_id)
    return Response(body="", status_code=204)


@route("/v1/business-hours/{schedule_id}/status")
def business_hours_status(schedule_id: str) -> dict[str, Any]:
    from chalicelib.api.business_hours_models import status_view
    from chalicelib.services import business_hours

    return status_view(business_hours.status(schedule_id, query_value(app.current_request, "at")))


# --- Dashboard ---------------------------------------------------------------------------------
# (the API key through a form, then a signed session cookie; chalicelib/dashboard/edge.py)

FORM_TYPES = ["application/x-www-form-urlencoded"]


@route("/dashboard")
def dashboard_page() -> Response:
    from chalicelib.dashboard import edge

    return edge.page(app.current_request)


@route("/dashboard/login", methods=["POST"], content_types=FORM_TYPES)
def dashboard_login() -> Response:
    from chalicelib.dashboard import edge

    return edge.login(app.current_request)


@route("/dashboard/logout", methods=["POST"], content_types=FORM_TYPES)
def dashboard_logout() -> Response:
    from chalicelib.dashboard import edge

    return edge.logout(app.current_request)


@route("/dashboard/assets/{name}")
def dashboard_asset(name: str) -> Response:
    from chalicelib.dashboard import edge

    return edge.asset(name)


# --- Satisfaction surveys ------------------------------------------------------------------------------------


@route("/csat/{token}", methods=["GET"])
def survey_page(token: str) -> Response:
    from chalicelib.http import survey_page

    return survey_page.show(token)


@route("/csat/{token}", methods=["POST"], content_types=FORM_TYPES)
def survey_answer(token: str) -> Response:
    from chalicelib.http import survey_page

    return survey_page.submit(token, app.current_request)
