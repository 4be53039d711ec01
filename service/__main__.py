"""Command line: serve, migrate, populate, compliance."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from typing import TextIO

from aiohttp import web

from service.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 2
    from service import log

    if args.command == "serve":
        if args.host is not None:
            settings = dataclasses.replace(settings, host=args.host)
        if args.port is not None:
            settings = dataclasses.replace(settings, port=args.port)
        if args.no_migrate:
            settings = dataclasses.replace(settings, migrate_on_start=False)
        try:
            loop = new_event_loop(args.loop)
        except ImportError:
            message = "configuration error: --loop uvloop needs the 'uvloop' extra installed"
            print(message, file=sys.stderr)  # noqa: T201 - CLI output
            return 2
        log.configure(settings)
        return serve(settings, loop)
    log.configure(settings, stream=sys.stderr)
    if args.command == "migrate":
        return asyncio.run(migrate(settings, args.revision))
    if args.command == "compliance":
        return asyncio.run(compliance(settings))
    return asyncio.run(populate(settings, full=args.full))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the REST API")
    serve_cmd.add_argument("--host", help="listen address (default HOST or 0.0.0.0)")
    serve_cmd.add_argument("--port", type=int, help="listen port (default PORT or 8080)")
    serve_cmd.add_argument(
        "--no-migrate", action="store_true", help="do not apply pending migrations at startup"
    )
    serve_cmd.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="event loop implementation (default asyncio; uvloop needs the 'uvloop' extra)",
    )
    migrate_cmd = commands.add_parser("migrate", help="apply pending database migrations")
    migrate_cmd.add_argument("--revision", default="head", help="target revision (default head)")
    populate_cmd = commands.add_parser(
        "populate", help="fetch and store tweets once, like POST /api/v1/populate"
    )
    populate_cmd.add_argument(
        "--full",
        action="store_true",
        help="refetch every tag's recent tweets instead of only those newer than the stored ones",
    )
    commands.add_parser(
        "compliance",
        help="one compliance pass, like POST /api/v1/compliance: forget what X says is gone",
    )
    return parser


LOOPS = ("asyncio", "uvloop")


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    """The serving loop. bench/ compares both; its README has the figures."""
    if name == "uvloop":
        import uvloop  # the optional 'uvloop' extra

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


def serve(settings: Settings, loop: asyncio.AbstractEventLoop | None = None) -> int:
    from service.app import create_app

    web.run_app(
        create_app(settings),
        loop=loop,
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=settings.shutdown_timeout,
    )
    return 0


async def migrate(settings: Settings, revision: str) -> int:
    from service import db

    url = await db.resolve_url(settings)
    await asyncio.to_thread(db.upgrade, url, revision)
    return 0


async def populate(settings: Settings, *, full: bool = False) -> int:
    from service.app import create_app
    from service.errors import InternalError, as_api_error
    from service.keys import POPULATOR

    runner = web.AppRunner(create_app(settings))
    await runner.setup()  # runs the cleanup contexts: database, migrations, source
    progress = _Progress(len(settings.tags), sys.stderr)
    try:
        result = await runner.app[POPULATOR].run(full=full, on_tag_done=progress.tag_done)
    except Exception as exc:
        error = as_api_error(exc)
        if isinstance(error, InternalError):
            raise  # unexpected: the traceback is the report
        progress.finish()
        print(json.dumps({"error": {"code": error.code, "message": error.message}}))  # noqa: T201
        return 1
    finally:
        await runner.cleanup()
    progress.finish()
    print(json.dumps(dataclasses.asdict(result), ensure_ascii=False))  # noqa: T201
    return 0


async def compliance(settings: Settings) -> int:
    from service.app import create_app
    from service.errors import InternalError, as_api_error
    from service.keys import COMPLIANCE

    runner = web.AppRunner(create_app(settings))
    await runner.setup()  # runs the cleanup contexts: database, migrations, source
    try:
        result = await runner.app[COMPLIANCE].run()
    except Exception as exc:
        error = as_api_error(exc)
        if isinstance(error, InternalError):
            raise  # unexpected: the traceback is the report
        print(json.dumps({"error": {"code": error.code, "message": error.message}}))  # noqa: T201
        return 1
    finally:
        await runner.cleanup()
    print(json.dumps(dataclasses.asdict(result)))  # noqa: T201
    return 0


class _Progress:
    """A one-line progress bar on a terminal; silent when stderr is redirected."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self._total = total
        self._done = 0
        self._stream = stream
        self._active = stream.isatty()

    def tag_done(self, tag: str, count: int) -> None:
        self._done += 1
        if not self._active:
            return
        width = 30
        filled = width * self._done // max(1, self._total)
        bar = "#" * filled + "." * (width - filled)
        self._stream.write(f"\r[{bar}] {self._done}/{self._total} {tag}: {count} tweets\x1b[K")
        self._stream.flush()

    def finish(self) -> None:
        if self._active and self._done:
            self._stream.write("\n")


if __name__ == "__main__":
    sys.exit(main())
