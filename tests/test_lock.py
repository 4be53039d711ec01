"""constraints.lock pins every runtime dependency, and the tested environment runs those pins."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>[A-Za-z0-9.+!_-]+)$")


def pins() -> dict[str, str]:
    result: dict[str, str] = {}
    for line in (ROOT / "constraints.lock").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        match = LINE.match(line)
        assert match, f"not an exact pin: {line!r}"
        result[canonicalize_name(match["name"])] = str(match["version"])
    return result


def runtime_closure() -> set[str]:
    """Every distribution the runtime dependencies pull in, from the installed metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        extras = requirement.extras or {""}
        for raw in metadata.requires(name) or []:
            child = Requirement(raw)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras):
                todo.append(child)
    return seen


def test_every_runtime_dependency_is_pinned() -> None:
    missing = runtime_closure() - pins().keys()
    assert not missing, f"run 'make lock': unpinned {sorted(missing)}"


def test_tested_environment_runs_the_pinned_versions() -> None:
    locked = pins()
    drift = {
        name: (metadata.version(name), locked[name])
        for name in runtime_closure()
        if metadata.version(name) != locked[name]
    }
    assert not drift, f"installed != constraints.lock: {drift}"


def test_every_pip_install_in_the_dockerfile_is_pinned() -> None:
    """Each `pip install` in the image either takes constraints.lock or exact == pins."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    installs = re.findall(r"pip install ([^&\n]+)", text)
    assert installs, "the Dockerfile installs nothing?"
    for args in installs:
        words = args.split()
        if "--constraint" in words:
            assert words[words.index("--constraint") + 1] == "constraints.lock"
            continue
        packages = [w for w in words if not w.startswith("-")]
        assert packages, args
        assert all("==" in p for p in packages), f"unpinned: {args}"
