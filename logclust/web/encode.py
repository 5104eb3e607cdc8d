"""JSON for the page: markup characters escaped."""

from __future__ import annotations

import json
from typing import Any


def to_json(doc: Any) -> bytes:
    """Compact JSON with `<`, `>` and `&` escaped (never markup, even if sniffed as HTML)."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(ch, esc)
    return text.encode()
