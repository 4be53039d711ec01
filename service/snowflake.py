"""X post ids ("snowflakes") carry their creation time: milliseconds since EPOCH_MS in the bits
above the low 22 (worker and sequence bits). So a newer post has a bigger id, which since_id and
the search window rely on.

EPOCH_MS is Twitter's `twepoch` in twitter-archive/snowflake
(src/main/scala/com/twitter/service/snowflake/IdWorker.scala): 2010-11-04T01:42:54.657Z.
"""

from __future__ import annotations

from typing import Final

EPOCH_MS: Final = 1_288_834_974_657
LOW_BITS: Final = 22


def created_ms(post_id: int) -> int:
    """Milliseconds since the Unix epoch at which `post_id` was made."""
    return (post_id >> LOW_BITS) + EPOCH_MS


def make_id(ms: int, low: int) -> int:
    """The id made at `ms` (Unix milliseconds) with `low` as its worker and sequence bits."""
    if not 0 <= low < 1 << LOW_BITS:
        raise ValueError(f"low bits out of range: {low}")
    return ((ms - EPOCH_MS) << LOW_BITS) | low
