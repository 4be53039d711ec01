"""Replays the bundled sample: X API v2 pages on disk, parsed exactly like live responses."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Final

from service.errors import UpstreamBadResponse
from service.model import Page
from service.sources.parse import parse_page

_TOKEN_RE: Final = re.compile(r"^[0-9]{3}$")
_EMPTY: Final = Page(tweets=(), users=(), places=(), next_token=None)


class SampleSource:
    """Pages live at `<dir>/<tag without #>/<NNN>.json`; `meta.next_token` names the next file."""

    name = "sample"

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    async def search(
        self, tag: str, *, max_results: int, next_token: str | None, since_id: int | None = None
    ) -> Page:
        del max_results  # pages are replayed as recorded; ingestion trims to the count it wants
        if next_token is not None and not _TOKEN_RE.match(next_token):
            raise UpstreamBadResponse(f"sample: invalid next_token {next_token!r}")
        path = self._dir / tag.lstrip("#") / f"{next_token or '001'}.json"
        text = await asyncio.to_thread(_read, path)
        if text is None:
            if next_token is None:
                return _EMPTY  # a tag the sample does not cover has no recent tweets
            raise UpstreamBadResponse(f"sample: page {next_token} of {tag} is missing")
        try:
            body = json.loads(text)
        except ValueError:
            raise UpstreamBadResponse(f"sample: {path.name} of {tag} is not valid JSON") from None
        page = parse_page(body)
        if since_id is None:
            return page
        # As X does with since_id: only newer tweets; newest first, so an older one ends the run.
        newer = tuple(t for t in page.tweets if t.id > since_id)
        done = len(newer) < len(page.tweets)
        return dataclasses.replace(page, tweets=newer, next_token=None if done else page.next_token)

    async def check(self) -> dict[str, Any]:
        manifest = self._dir / "manifest.json"
        ok = await asyncio.to_thread(manifest.is_file)
        result: dict[str, Any] = {"ok": ok, "source": self.name, "offline": True}
        if not ok:
            result["error"] = f"bundled sample not found under {self._dir}"
        return result


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
