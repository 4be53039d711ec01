"""X's batch compliance, faked: the job endpoints on the fake X API, and a storage host of its own
(another 127.0.0.1 port) serving the signed upload and download URLs, as Google Cloud Storage
serves X's.

What X documents and the fake does (developer.x.com/en/docs/x-api/compliance/batch-compliance/
introduction and quick-start): one concurrent job per type; an upload is a PUT of plain text,
one id per line, to the upload_url, already signed, so it carries no credentials; a job is
created, in_progress, complete, failed or expired; the results are JSON lines (id, action,
created_at, redacted_at, reason) for the uploaded ids that need an action, and no others.

The storage host refuses what the real one would not accept and what the service must never
send: an upload with an Authorization header, with a content type other than text/plain, or to
a URL that is not byte for byte the one issued (its signature has a lower-case percent escape,
which any re-encoding would change). The API host refuses an upload sent to it (a URL rewritten
to X_API_BASE_URL). `refusals` records each, for tests to assert there were none.

Failure modes, set with `fault`: "failed" and "expired" (the job ends so after its upload),
"upload_refused" (the storage answers 403), "download_error" (it answers 503), "never" (the job
stays in_progress).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web

JOBS_PATH = "/2/compliance/jobs"
# Percent escapes as X's signed URLs have them (X-Goog-Credential=...%2F...), one in lower case:
# a client that re-encodes the URL sends %2F there, and the signature no longer matches.
SIGNATURE = (
    "X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=fake%2fcompliance%2Fauto"
    "&X-Goog-Signature=5ca1ab1e"
)

Fault = Literal["failed", "expired", "upload_refused", "download_error", "never"]


@dataclass
class Job:
    id: str
    kind: str
    status: str = "created"
    ids: list[int] = field(default_factory=list)
    polls: int = 0


@dataclass
class Upload:
    job_id: str
    ids: list[int]


class FakeCompliance:
    def __init__(self, bearer: str) -> None:
        self.bearer = bearer
        self.storage_url = ""  # set by the fixture that serves storage_app()
        self.results: dict[tuple[str, int], tuple[str, str]] = {}
        self.fault: Fault | None = None
        self.polls_to_complete = 1  # status checks answering in_progress before complete
        self.jobs: dict[str, Job] = {}
        self.uploads: list[Upload] = []
        self.downloads: list[str] = []
        self.refusals: list[str] = []
        self._ids = itertools.count(1425543269983784962)
        self._open = asyncio.Event()
        self._open.set()

    # -- setup ----------------------------------------------------------------------------------
    def result(
        self, kind: str, item_id: int, action: str = "delete", reason: str = "deleted"
    ) -> None:
        """X will report `item_id` (of kind tweets or users) with this action and reason."""
        self.results[(kind, item_id)] = (action, reason)

    def pause(self) -> None:
        """Hold every job status check (after counting it) until `resume()`."""
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    # -- the API host ---------------------------------------------------------------------------
    def add_routes(self, app: web.Application) -> None:
        app.router.add_post(JOBS_PATH, self._create)
        app.router.add_get(JOBS_PATH + "/{id}", self._get)
        # Where an upload rewritten to the API's base URL would land.
        app.router.add_route("*", "/storage/{tail:.*}", self._misdirected)

    def _authorized(self, request: web.Request) -> bool:
        # App-only auth, as X requires for these endpoints.
        return request.headers.get("Authorization") == f"Bearer {self.bearer}"

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        body = await request.json()
        kind = body.get("type")
        if kind not in ("tweets", "users"):
            return _invalid("type must be tweets or users")
        if any(
            j.kind == kind and j.status in ("created", "in_progress") for j in self.jobs.values()
        ):
            return _invalid(f"a {kind} job is already running: one concurrent job per type")
        job = Job(id=str(next(self._ids)), kind=kind)
        self.jobs[job.id] = job
        return web.json_response({"data": self._describe(job)})

    async def _get(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"title": "Unauthorized", "status": 401}, status=401)
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return web.json_response({"title": "Not Found Error", "status": 404}, status=404)
        job.polls += 1
        await self._open.wait()
        if job.status == "in_progress" and self.fault != "never":
            if self.fault in ("failed", "expired"):
                job.status = self.fault
            elif job.polls > self.polls_to_complete:
                job.status = "complete"
        return web.json_response({"data": self._describe(job)})

    async def _misdirected(self, request: web.Request) -> web.Response:
        self.refusals.append(f"{request.method} {request.path} reached the API host")
        return web.json_response({"title": "Forbidden", "status": 403}, status=403)

    def _describe(self, job: Job) -> dict[str, Any]:
        created = datetime.now(UTC)
        return {
            "id": job.id,
            "type": job.kind,
            "status": job.status,
            "resumable": False,
            "created_at": _iso(created),
            "upload_url": f"{self.storage_url}/storage/{job.id}/submission?{SIGNATURE}",
            "upload_expires_at": _iso(created + timedelta(minutes=15)),
            "download_url": f"{self.storage_url}/storage/{job.id}/delivery?{SIGNATURE}",
            "download_expires_at": _iso(created + timedelta(days=7)),
        }

    # -- the storage host -----------------------------------------------------------------------
    def storage_app(self) -> web.Application:
        app = web.Application(client_max_size=1024**3)
        app.router.add_put("/storage/{id}/submission", self._upload)
        app.router.add_get("/storage/{id}/delivery", self._download)
        return app

    def _refused(self, request: web.Request) -> str | None:
        if "Authorization" in request.headers:
            return "an Authorization header"
        if request.raw_path.partition("?")[2] != SIGNATURE:
            return f"a URL not as issued: {request.raw_path}"
        return None

    async def _upload(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        content_type = request.headers.get("Content-Type", "")
        why = self._refused(request)
        if why is None and content_type != "text/plain":
            why = f"content type {content_type!r}"
        if why is not None:
            self.refusals.append(f"upload with {why}")
            return web.Response(status=403, text=f"refused: {why}")
        if job is None or job.status != "created":
            return web.Response(status=403, text="no job awaits an upload here")
        text = await request.text()
        ids = [int(line) for line in text.splitlines() if line]
        self.uploads.append(Upload(job.id, ids))
        if self.fault == "upload_refused":
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")
        job.ids = ids
        job.status = "in_progress"
        return web.Response(status=200)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        job = self.jobs.get(request.match_info["id"])
        why = self._refused(request)
        if why is not None:
            self.refusals.append(f"download with {why}")
            return web.Response(status=403, text=f"refused: {why}")
        if job is None or job.status != "complete":
            return web.Response(status=404, text="no results here")
        self.downloads.append(job.id)
        if self.fault == "download_error":
            return web.Response(status=503, text="Service Unavailable")
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for item_id in job.ids:
            found = self.results.get((job.kind, item_id))
            if found is None:
                continue  # X reports only the ids that need an action
            action, reason = found
            line = {
                "id": str(item_id),
                "action": action,
                "created_at": "2026-11-19T12:00:00.000Z",
                "redacted_at": "2026-11-20T12:00:00.000Z",
                "reason": reason,
            }
            await response.write(json.dumps(line).encode() + b"\n")
        await response.write_eof()
        return response


def _invalid(detail: str) -> web.Response:
    body = {
        "errors": [{"message": detail}],
        "title": "Invalid Request",
        "detail": detail,
        "type": "https://api.twitter.com/2/problems/invalid-request",
    }
    return web.json_response(body, status=400, content_type="application/problem+json")


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
