"""OpenAPI 3 document, Swagger UI and request validation.

aiohttp-apispec supplies the @docs/@querystring_schema/@response_schema decorators, but its spec
builder emits Swagger 2.0 only (2.2.3 hard-codes openapi_version) and mutates the decorated
handlers' metadata on every app it is set up on. So the document is built here from the same
decorator metadata, with apispec in OpenAPI 3 mode, once per app; and validation_middleware runs
the same webargs parser as aiohttp-apispec's, without the app-wide string keys it needs.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any, Final

import aiohttp_apispec
from aiohttp import web
from aiohttp.typedefs import Handler
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow.warnings import RemovedInMarshmallow4Warning
from webargs.aiohttpparser import parser

from service.errors import BadRequest

OPENAPI_PATH: Final = "/api/openapi.json"
DOCS_PATH: Final = "/api/docs"
_STATIC_PATH: Final = "/api/docs/static"
_STATIC_DIR: Final = Path(aiohttp_apispec.__file__).parent / "static"
_LOCATIONS: Final = {"querystring": "query", "match_info": "path", "headers": "header"}
_SPEC_KEY: Final = web.AppKey("openapi_spec", dict)


def _validation_error(
    error: Any, req: Any, schema: Any, error_status_code: Any, error_headers: Any
) -> None:
    del req, schema, error_status_code, error_headers
    raise BadRequest("invalid query parameters", details=error.normalized_messages())


@web.middleware
async def validation_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Each @querystring_schema/@request_schema result lands in request[put_into], e.g.
    request["querystring"]; invalid input raises BadRequest (400, the error middleware's answer).

    A request without a query string gets the schema's defaults without a parse, the common case
    of a dashboard polling /api/v1/users. Measured (valgrind --tool=callgrind, one process):
    webargs parses an empty query string in 146,000 instructions, the defaults cost 2,600; a
    whole request to a bare aiohttp handler costs about 210,000.
    """
    for item in getattr(request.match_info.handler, "__schemas__", ()):
        schema = item["schema"]
        if item["locations"] == ["querystring"] and not request.query_string:
            data = _defaults(schema)
        else:
            data = await parser.parse(schema, request, locations=item["locations"])
        request[item["put_into"] or "data"] = data
    return await handler(request)


def _defaults(schema: Any) -> dict[str, Any]:
    cached: dict[str, Any] | None = getattr(schema, "_defaults_cache", None)
    if cached is None:
        cached = schema.load({})
        schema._defaults_cache = cached
    return dict(cached)


def setup(app: web.Application, *, title: str, version: str, secured: bool) -> None:
    """Wire request validation and the docs routes; call after every API route is added.

    `secured`: the service has an API_TOKEN. Only then does the document ask for the bearer
    token: without one, the operations that would need it are open, and say so.
    """
    parser.error_callback = _validation_error

    # Built now, from the routes already added: a broken description fails create_app,
    # not a request.
    with warnings.catch_warnings():
        # apispec 3 (what aiohttp-apispec 2.2.3 allows) reads marshmallow 3's deprecated attributes.
        warnings.simplefilter("ignore", RemovedInMarshmallow4Warning)
        app[_SPEC_KEY] = build_spec(app, title=title, version=version, secured=secured)
    app.router.add_get(OPENAPI_PATH, _spec_handler, name="openapi")
    app.router.add_get(DOCS_PATH, _docs_handler, name="docs")
    app.router.add_get(_STATIC_PATH + "/{name}", _asset_handler, name="docs_static")


def build_spec(
    app: web.Application, *, title: str, version: str, secured: bool = True
) -> dict[str, Any]:
    plugin = MarshmallowPlugin()
    components: dict[str, Any] = {}
    if secured:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    spec = APISpec(
        title=title,
        version=version,
        openapi_version="3.0.3",
        plugins=[plugin],
        info={
            "description": "Hashtag tweets from the X API v2, stored in PostgreSQL, "
            "served from materialized views."
        },
        components=components,
    )
    for route in app.router.routes():
        meta = getattr(route.handler, "__apispec__", None)
        if meta is None or route.resource is None:
            continue
        keys = ("tags", "summary", "description", "operationId") + (
            ("security",) if secured else ()
        )
        operation: dict[str, Any] = {key: meta[key] for key in keys if key in meta}
        parameters: list[dict[str, Any]] = list(meta.get("parameters", []))
        for item in meta.get("schemas", []):
            where = _LOCATIONS.get(item["options"].get("default_in", "querystring"), "query")
            parameters.extend(plugin.converter.schema2parameters(item["schema"], default_in=where))
        if parameters:
            operation["parameters"] = parameters
        produces = meta.get("produces", ["application/json"])
        operation["responses"] = {
            str(code): _response(body, produces if str(code).startswith("2") else ())
            for code, body in sorted(meta["responses"].items(), key=lambda item: str(item[0]))
        }
        spec.path(path=route.resource.canonical, operations={route.method.lower(): operation})
    document: dict[str, Any] = spec.to_dict()
    return document


# A success that can also be CSV (@docs(produces=[..., "text/csv"])): one text body whose rows
# are the JSON schema's items, the header row their field names.
_CSV_BODY: Final = {
    "schema": {
        "type": "string",
        "description": "RFC 4180 CSV (CRLF line ends), a header row with the JSON field names, "
        "null as an empty field; the same rows in the same order as the JSON.",
    }
}


def _response(body: dict[str, Any], produces: Any = ()) -> dict[str, Any]:
    response: dict[str, Any] = {"description": body.get("description") or ""}
    if "schema" in body:
        response["content"] = {"application/json": {"schema": body["schema"]}}
        if "text/csv" in produces:
            response["content"]["text/csv"] = _CSV_BODY
    if "headers" in body:
        response["headers"] = body["headers"]
    return response


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document `app` serves at OPENAPI_PATH."""
    return app[_SPEC_KEY]


async def _spec_handler(request: web.Request) -> web.Response:
    return web.json_response(request.app[_SPEC_KEY])


async def _docs_handler(request: web.Request) -> web.Response:
    del request
    return web.Response(text=_docs_page(), content_type="text/html")


async def _asset_handler(request: web.Request) -> web.StreamResponse:
    # Not add_static: its FileResponse finds a file missing only while sending, past every
    # middleware, so a 404 went out with an empty non-JSON body and was counted as a 200.
    # match_info is percent-decoded ("..%2F" arrives as "../"): only a plain file name passes.
    name = request.match_info["name"]
    path = _STATIC_DIR / name
    if name.startswith(".") or "/" in name or not await asyncio.to_thread(path.is_file):
        raise web.HTTPNotFound()
    return web.FileResponse(path)


def _docs_page() -> str:
    # The bundled page is a Jinja template with exactly these two placeholders.
    template = (_STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return template.replace("{{ path }}", OPENAPI_PATH).replace("{{ static }}", _STATIC_PATH)
