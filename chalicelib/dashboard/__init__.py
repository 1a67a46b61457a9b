"""The analytics dashboard: its pages, script and style are plain files beside this module
(Chalice packages chalicelib/ with the app), read once per process and kept.

Nothing on the pages is inline: the script and style are files served from
`/dashboard/assets/<name>` (a fixed list, below), so the Content-Security-Policy allows only
'self'. Chart.js (chart.umd.min.js, v4.6.1, MIT: chart.js.LICENSE.md) is vendored here: no CDN.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent

# name -> content type; nothing else under /dashboard/assets/ is served
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "chart.umd.min.js": "text/javascript; charset=utf-8",
    "chart.js.LICENSE.md": "text/plain; charset=utf-8",
}
PAGES = ("login.html", "dashboard.html")


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str
    version: str  # a short hash of the body: pages name assets with ?v=<version>, so they cache long


@functools.cache
def asset(name: str) -> Asset | None:
    if name not in ASSETS:
        return None
    body = (HERE / name).read_text(encoding="utf-8")
    return Asset(body, ASSETS[name], hashlib.sha256(body.encode("utf-8")).hexdigest()[:12])


@functools.cache
def template(name: str) -> str:
    if name not in PAGES:
        raise KeyError(name)
    html = (HERE / name).read_text(encoding="utf-8")
    for asset_name in ASSETS:
        found = asset(asset_name)
        if found is not None:
            html = html.replace("{{v:" + asset_name + "}}", found.version)
    return html
