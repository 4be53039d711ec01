"""CSV rendering of the read endpoints' rows: RFC 4180 as spreadsheets and pandas read it.

CRLF line ends, a field quoted only when it holds a comma, a double quote, CR or LF (quotes
doubled inside), a header row with the JSON field names, and null as an empty field.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

CONTENT_TYPE: Final = "text/csv"
CHARSET: Final = "utf-8"


def render(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    buffer = io.StringIO(newline="")
    # QUOTE_MINIMAL quotes exactly what RFC 4180 requires: separators, quotes, CR and LF.
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    writer.writerows([_cell(row[column]) for column in columns] for row in rows)
    return buffer.getvalue().encode(CHARSET)


def _cell(value: Any) -> Any:
    return "" if value is None else value
