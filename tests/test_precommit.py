""".pre-commit-config.yaml runs the checks `make lint` runs, with the same tools, and the
hooks STYLE.md §9 lists. pre-commit itself is not run here: it fetches its remote hooks from
GitHub."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        (ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8")
    )
    return config


def _hooks(config: dict[str, Any], repo: str) -> dict[str, dict[str, Any]]:
    return {
        hook["id"]: hook
        for entry in config["repos"]
        if entry["repo"] == repo
        for hook in entry["hooks"]
    }


def _lint_commands() -> list[list[str]]:
    """The commands of the Makefile's lint target, $(BIN) spelled out."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    venv = re.search(r"^VENV\s*\?=\s*(\S+)", makefile, re.M)
    assert venv is not None
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None
    bin_dir = f"{venv[1]}/bin"
    return [shlex.split(line.strip().replace("$(BIN)", bin_dir)) for line in recipe[1].splitlines()]


def test_precommit_local_hooks_run_the_tools_make_lint_runs() -> None:
    lint = _lint_commands()
    assert [cmd[:2] for cmd in lint] == [
        [".venv/bin/mypy"],
        [".venv/bin/ruff", "check"],
        [".venv/bin/ruff", "format"],
    ]
    local = _hooks(_config(), "local")
    entries = {hook_id: shlex.split(hook["entry"]) for hook_id, hook in local.items()}

    assert entries["mypy"] == lint[0]  # no file arguments added either:
    assert local["mypy"]["pass_filenames"] is False  # [tool.mypy] files decides, as in make lint
    assert entries["ruff-check"][:2] == lint[1][:2]
    assert "--fix" in entries["ruff-check"]
    assert "--exit-non-zero-on-fix" in entries["ruff-check"]  # a fixed file fails the commit
    assert entries["ruff-format"][:2] == lint[2][:2]
    for hook in local.values():
        assert hook["language"] == "system"  # the project venv, not an environment of its own


def test_precommit_has_the_hooks_style_md_lists_at_released_revs() -> None:
    config = _config()
    ids = {hook["id"] for entry in config["repos"] for hook in entry["hooks"]}
    assert ids >= {
        "ruff-check",
        "ruff-format",
        "mypy",
        "check-toml",
        "check-yaml",
        "end-of-file-fixer",
        "trailing-whitespace",
        "codespell",
    }
    for entry in config["repos"]:
        if entry["repo"] != "local":
            # A release tag, never a branch that moves under the hook.
            assert re.fullmatch(r"v\d+\.\d+\.\d+", entry["rev"]), entry


def test_precommit_is_not_part_of_ci() -> None:
    # Its remote hooks come from GitHub, which CI cannot reach; make lint is CI's check.
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pre-commit" not in ci
