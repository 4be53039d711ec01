"""Read responses rendered once per view generation and served from memory.

The views change only when a populate commits, and each populate bumps `view_state.generation`
in the same transaction. A rendered body is tagged with the generation it was read at, and is
served only while that is still the current generation, as last confirmed by the database:

- a watcher polls the one-row `view_state` every POLL seconds (a primary-key read), so every
  replica notices another replica's populate within a second;
- entries count as confirmed for CONFIRM_WINDOW seconds after the last successful poll. If the
  database stops answering, reads fall through to it and fail fast with 503, instead of serving
  what can no longer be confirmed as current.

Keys name a representation of a read with its normalized parameters (tag, hour range, format).
Clients choose those, so the entries are bounded: at most MAX_ENTRIES, least recently used out
first, and all of them dropped when the generation changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Final

import aiopg
import psycopg2
from loguru import logger

from service import queries
from service.db import connection
from service.tasks import background

POLL: Final = 0.5
# Every plain read, each tag's and each format's, fits many times over; what a client can add
# beyond that (one entry per distinct hour range) only pushes out the least recently used.
MAX_ENTRIES: Final = 1024
CONFIRM_WINDOW: Final = 1.5
# Bodies below this size are not worth a Content-Encoding round trip.
_GZIP_MIN: Final = 256

Loader = Callable[[aiopg.Cursor], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class Rendered:
    generation: int
    body: bytes
    gzipped: bytes | None
    tag: str  # the entity tag (unquoted) of the identity body: a strong validator
    tag_gzip: str  # and of the gzip-coded one (a different representation)


class ViewCache:
    def __init__(self, pool: aiopg.Pool, *, timeout: float, max_entries: int | None = None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._max_entries = max_entries or MAX_ENTRIES  # read per cache, so tests can shrink it
        self._generation = -1
        self._confirmed_at = float("-inf")
        self._entries: OrderedDict[Hashable, Rendered] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[Rendered]] = {}

    @property
    def generation(self) -> int:
        return self._generation

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Rendered | None:
        entry = self._entries.get(key)
        if entry is None or entry.generation != self._generation:
            return None
        if time.monotonic() - self._confirmed_at > CONFIRM_WINDOW:
            return None
        self._entries.move_to_end(key)
        return entry

    async def load(self, key: Hashable, loader: Loader) -> Rendered:
        """Render `key` from the database; concurrent callers for one key share one query."""
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Rendered] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            entry = await self._load(loader)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # consumed here: waiters re-raise it, nobody else must log it
            raise
        else:
            future.set_result(entry)
            if entry.generation >= self._generation:
                self._store(key, entry)
            return entry
        finally:
            del self._loading[key]

    def _store(self, key: Hashable, entry: Rendered) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def _load(self, loader: Loader) -> Rendered:
        async with connection(self._pool, self._timeout) as conn, conn.cursor() as cur:
            # One snapshot for the generation and the rows, so the tag matches the body.
            await queries.begin_snapshot(cur)
            try:
                generation = await queries.select_generation(cur)
                body = await loader(cur)
            finally:
                if not conn.closed:
                    await queries.rollback(cur)
        self.observe(generation)
        return render(generation, body)

    def observe(self, generation: int) -> None:
        """Record a generation read from the database just now."""
        if generation != self._generation:
            if generation > self._generation:
                self._entries = OrderedDict(
                    (k, v) for k, v in self._entries.items() if v.generation >= generation
                )
            self._generation = max(generation, self._generation)
        self._confirmed_at = time.monotonic()

    async def poll_once(self) -> None:
        async with connection(self._pool, self._timeout) as conn, conn.cursor() as cur:
            self.observe(await queries.select_generation(cur))

    async def watch(self) -> None:
        """Poll forever; failures only stop confirming (see the module docstring)."""
        failing = False
        while True:
            try:
                await self.poll_once()
                if failing:
                    logger.bind(event="cache.watch").info("view generation readable again")
                failing = False
            except (psycopg2.Error, TimeoutError, OSError) as exc:
                if not failing:
                    logger.bind(event="cache.watch").warning(
                        "cannot read the view generation ({error}); reads bypass the cache",
                        error=type(exc).__name__,
                    )
                failing = True
            await asyncio.sleep(POLL)


def render(generation: int, body: bytes) -> Rendered:
    digest = hashlib.blake2b(body, digest_size=12).hexdigest()
    gzipped = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= _GZIP_MIN else None
    tag = f"{generation}-{digest}"
    return Rendered(generation, body, gzipped, tag=tag, tag_gzip=f"{tag}-gz")


def watching(cache: ViewCache) -> contextlib.AbstractAsyncContextManager[None]:
    return background(cache.watch(), "view-cache-watch")
