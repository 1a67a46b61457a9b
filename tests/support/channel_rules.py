"""A channel's rules as the module that carries it states them (channels/registry.py), for unit tests."""

from __future__ import annotations

from chalicelib.channels import registry
from chalicelib.domain.channel_rules import ChannelRules
from chalicelib.domain.messages import Channel
from chalicelib.domain.replies import provider_for


def rules_for(channel: Channel, whatsapp_provider: str | None = None) -> ChannelRules:
    rules: ChannelRules = registry.channel(provider_for(channel, whatsapp_provider)).RULES[channel.value]
    return rules
