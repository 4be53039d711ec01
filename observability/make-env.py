#!/usr/bin/env python3
"""Write .env from .env.example, filling every empty REQUIRED secret with a random value.

An existing .env is never overwritten. Values are hex, so they are safe inside DATABASE_URL.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GENERATED = (
    "POSTGRES_PASSWORD",
    "APP_DB_PASSWORD",
    "ANALYST_DB_PASSWORD",
    "API_TOKEN",
    "GRAFANA_ADMIN_PASSWORD",
)


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else ROOT
    target = root / ".env"
    if target.exists():
        print(".env exists; left as it is", file=sys.stderr)  # noqa: T201 - CLI output
        return 0
    lines = []
    for line in (root / ".env.example").read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key in GENERATED and not value.strip():
            line = f"{key}={secrets.token_hex(24)}"
        lines.append(line)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target.chmod(0o600)
    print("wrote .env with random passwords and API_TOKEN", file=sys.stderr)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
