"""What a compliance pass does with X's results, for tests of the database half: one transaction
that applies them, refreshes the views and bumps the generation; the read cache then hears of
the new generation, as it does after a populate."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import web

from service import queries
from service.keys import CACHE, POOL
from service.matviews import VIEWS
from service.model import ComplianceItem


async def apply_items(app: web.Application, items: Sequence[ComplianceItem]) -> queries.Applied:
    async with app[POOL].acquire() as conn, conn.cursor() as cur, cur.begin():
        applied = await queries.apply_compliance(cur, items)
        for view in VIEWS:
            await queries.refresh_view(cur, view)
        generation = await queries.bump_generation(cur)
    app[CACHE].observe(generation)
    return applied
