"""python -m tools.samplegen [--out DIR]: write the bundled sample (default service/sample_data)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from service.config import SAMPLE_DIR
from tools.samplegen.generator import generate


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.samplegen", description=__doc__)
    parser.add_argument("--out", type=Path, default=SAMPLE_DIR, help="output directory")
    args = parser.parse_args()
    generate(args.out)
    print(f"sample written to {args.out}", file=sys.stderr)  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    sys.exit(main())
