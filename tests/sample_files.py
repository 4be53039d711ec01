"""The bundled sample's files as a replayer reads them: a tag's 001.json, then each page the
previous one's next_token names."""

from __future__ import annotations

import json
from typing import Any

from service.config import SAMPLE_DIR

Json = dict[str, Any]


def load(path: str) -> Json:
    body: Json = json.loads((SAMPLE_DIR / path).read_text(encoding="utf-8"))
    return body


def sample_pages(tag: str) -> list[Json]:
    """The tag's pages in next_token order; a chain that comes back on itself fails."""
    stems, pages = ["001"], []
    while True:
        pages.append(load(f"{tag.removeprefix('#')}/{stems[-1]}.json"))
        token = pages[-1]["meta"].get("next_token")
        if token is None:
            return pages
        assert token not in stems, f"{tag}: next_token {token} loops"
        stems.append(token)


def manifest() -> Json:
    return load("manifest.json")
