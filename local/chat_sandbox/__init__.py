"""Loopback emulators of the chat apps' send APIs (Meta Graph, Telegram Bot API, LINE Messaging
API, WeChat Official Account API), plugged into the provider sandbox under /<prefix>/.

Each checks what the real API checks (token, required fields, limits) and records what it
accepted; see each module for the endpoints it serves.
"""
