"""The web chat page and its embed script: plain files beside this module (Chalice packages
chalicelib/ with the app), read once per process and kept.

The page's only script and style are inline; their SHA-256 hashes, computed when the page is
read, are what its Content-Security-Policy allows, so nothing else can run on it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
_BLOCK = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True)
class Asset:
    body: str
    script_hashes: tuple[str, ...] = ()
    style_hashes: tuple[str, ...] = ()


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


@functools.cache
def page() -> Asset:
    html = (HERE / "page.html").read_text(encoding="utf-8")
    scripts = tuple(_hash(body) for kind, body in _BLOCK.findall(html) if kind == "script")
    styles = tuple(_hash(body) for kind, body in _BLOCK.findall(html) if kind == "style")
    return Asset(html, scripts, styles)


@functools.cache
def embed_script() -> Asset:
    return Asset((HERE / "embed.js").read_text(encoding="utf-8"))
