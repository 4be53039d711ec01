"""What a populate fetches: every tag's newest tweets from a TweetSource, all or nothing.

No database here: the Populator hands the batches to one transaction (service/ingestion.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Final

from loguru import logger

from service import metrics
from service.errors import UpstreamBadResponse
from service.model import Place, TagBatch, User
from service.sources.base import TweetSource

# The API returns at least 10 tweets a page; a run that sees more pages than this for one tag
# is looping on empty pages and stops there.
_PAGE_SLACK: Final = 5

TagDone = Callable[[str, int], None]


async def fetch(
    source: TweetSource,
    tags: Sequence[str],
    *,
    per_tag: int,
    concurrency: int,
    since: Mapping[str, int] | None = None,
    on_tag_done: TagDone | None = None,
) -> list[TagBatch]:
    """Each tag's newest `per_tag` tweets, in the order of `tags`; for a tag in `since`, only the
    tweets newer than that id. At most `concurrency` searches run at once. All or nothing: the
    first failure cancels the other searches and is raised."""
    since = since or {}
    # Bounded: many concurrent searches that hit a 429 would all wake at the same moment.
    gate = asyncio.Semaphore(concurrency)

    async def one(tag: str) -> TagBatch:
        async with gate:
            batch = await _fetch_tag(source, tag, per_tag, since.get(tag))
        metrics.TWEETS_FETCHED.labels(tag=tag).inc(len(batch.tweets))
        logger.bind(event="populate.fetch", tag=tag, tweets=len(batch.tweets)).info(
            "fetched {n} tweets for {tag} in {pages} page(s)",
            n=len(batch.tweets),
            tag=tag,
            pages=batch.pages,
        )
        if on_tag_done is not None:
            on_tag_done(tag, len(batch.tweets))
        return batch

    return await _all_or_nothing(one(tag) for tag in tags)


async def _fetch_tag(source: TweetSource, tag: str, want: int, since_id: int | None) -> TagBatch:
    batch = TagBatch(tag=tag)
    seen: set[int] = set()
    users: dict[int, User] = {}
    places: dict[str, Place] = {}
    token: str | None = None
    max_pages = want // 10 + _PAGE_SLACK
    while len(batch.tweets) < want:
        if batch.pages >= max_pages:
            raise UpstreamBadResponse(
                f"X API kept paginating {tag} past {max_pages} pages without enough tweets"
            )
        page = await source.search(
            tag, max_results=want - len(batch.tweets), next_token=token, since_id=since_id
        )
        batch.pages += 1
        for tweet in page.tweets:
            if tweet.id not in seen and len(batch.tweets) < want:
                seen.add(tweet.id)
                batch.tweets.append(tweet)
        users.update((u.id, u) for u in page.users)
        places.update((p.id, p) for p in page.places)
        token = page.next_token
        if token is None:
            break
    # Keep only the includes the kept tweets refer to.
    authors = {t.author_id for t in batch.tweets}
    place_ids = {t.place_id for t in batch.tweets if t.place_id}
    batch.users = [u for uid, u in users.items() if uid in authors]
    batch.places = [p for pid, p in places.items() if pid in place_ids]
    return batch


async def _all_or_nothing(coros: Iterable[Awaitable[TagBatch]]) -> list[TagBatch]:
    """Await all; on the first failure cancel the rest and raise it (not an ExceptionGroup)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]  # checked just above
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
