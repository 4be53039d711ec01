"""README's layout paragraph names only files and directories the tree has."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHLIKE = re.compile(r"^[\w./-]+(?:/|\.py|\.yaml)$")


def test_readme_layout_names_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    paragraph = readme[readme.index("\nLayout: ") :].split("\n\n")[0]
    names = [n for n in re.findall(r"`([^`]+)`", paragraph) if PATHLIKE.match(n)]
    assert len(names) > 10, "the layout paragraph was not found"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # A name may sit anywhere below the directory the paragraph is describing.
    missing = [
        name
        for name in names
        if not any(
            ("/" + path).endswith("/" + name) or f"/{name}" in f"/{path}" for path in tracked
        )
    ]
    assert missing == []
