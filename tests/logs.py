"""What the service logs during a test, captured through its production JSON sink."""

from __future__ import annotations

import io

from service import log


class CapturedLogs(io.StringIO):
    """A StringIO that first flushes the buffered request log lines when read."""

    def getvalue(self) -> str:
        log.ACCESS.flush()
        return super().getvalue()

    def lines(self) -> list[str]:
        return self.getvalue().splitlines()
