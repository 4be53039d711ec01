"""The native stack, started once for the module that asks for it; process logs on failure."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from testing.processes import ProcessError
from tests.stack.stack import NativeStack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    directory: Path = tmp_path_factory.mktemp("stack")
    try:
        with running_stack(directory) as native:
            yield native
    except ProcessError as exc:
        # A missing tool or a process that would not start: fail (never skip) with the reason;
        # CI installs every tool, so a skip would hide a broken stack.
        pytest.fail(str(exc), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    native = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(native, NativeStack):
        report.sections.append(("stack process logs", native.processes.diagnostics()))
    return report
