"""What ingestion needs from a tweet source."""

from __future__ import annotations

from typing import Any, Protocol

from service.model import Page


class TweetSource(Protocol):
    name: str

    async def search(
        self, tag: str, *, max_results: int, next_token: str | None, since_id: int | None = None
    ) -> Page:
        """One page of recent tweets for `tag`, newest first, only those newer than `since_id`."""

    async def check(self) -> dict[str, Any]:
        """Cheap connectivity check: {"ok": bool, ...}; never raises."""
