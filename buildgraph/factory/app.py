"""The factory's HTTP service: schematics, assets, PXE scripts, catalogs, health, metrics.

Routes and status codes follow the public Image Factory (DESIGN section 11), with the
limits it lacks: a schematic body over :data:`MAX_BODY` is 413, a body that does not
arrive within :data:`BODY_SECONDS` is 408, every path segment is checked by its grammar
(no segment reaches the filesystem: schematics are found by a 64-hex ID, assets are built
by name), a malformed version is 400. Every error is one line of text naming what is
wrong; nothing answers with a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Route

from ..engine.errors import BuildgraphError
from ..oci.registry import RegistryError
from ..variables import ARCHES
from . import assets, catalog, registry, schematic, ui
from .assets import AssetError
from .builds import Builder, BuildFailedError, BusyError
from .catalog import Catalog, UnknownNameError
from .request import Build, UnservedError, build_for
from .schematic import SchematicError
from .store import ID, SchematicStore
from .versions import MalformedVersionError, UnknownVersionError, Version, Versions

MAX_BODY = 1 << 20
MAX_HEADERS = 16 << 10
BODY_SECONDS = 10.0
RETRY_AFTER = "30"
CATALOG_PLATFORM = ",".join(f"linux/{arch}" for arch in ARCHES)
"""The catalogs index every arch: an extension of either arch resolves by one name."""


class SchematicNotFoundError(BuildgraphError):
    """No schematic has the ID (404)."""


_STATUS: dict[type, int] = {
    SchematicError: 400, AssetError: 400, MalformedVersionError: 400, UnknownNameError: 400,
    UnknownVersionError: 404, UnservedError: 404, SchematicNotFoundError: 404,
    BuildFailedError: 500, RegistryError: 502, BusyError: 503,
}  # fmt: skip
"""Each error's status, by its class or the nearest base listed; any other is a 400: a
request this factory cannot serve as asked (a schematic the imager's profile refuses)."""


@dataclass
class Factory:
    """What the routes share: the store, the builder, the versions and their catalogs."""

    root: Path
    store: SchematicStore
    builder: Builder
    versions: Versions
    platforms: dict[str, dict]
    extension_dir: Path
    keys: Path | None = None
    token: str | None = None
    external_url: str | None = None
    catalogs: dict[str, Catalog] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    builds: dict[tuple[str, str, str], Build] = field(default_factory=dict)
    """Each asset's build, by schematic, version and path: all three are immutable."""
    blobs: registry.Blobs = field(init=False)

    def __post_init__(self) -> None:
        self.blobs = registry.Blobs(self.builder.state / "registry")

    def allows(self, token: str) -> bool:
        """Whether ``token`` may create schematics: any, without --schematic-token."""
        return self.token is None or hmac.compare_digest(token.encode(), self.token.encode())

    @staticmethod
    def status_of(err: BuildgraphError) -> int:
        return next((_STATUS[kind] for kind in type(err).__mro__ if kind in _STATUS), 400)

    async def catalog(self, version: Version) -> Catalog:
        found = self.catalogs.get(version.name)
        if found is None:
            if version.imager is None:
                goal = ("extensions-catalog-layer", "overlays-catalog-layer", "catalogs")
                build = Build(goal, {"PLATFORM": CATALOG_PLATFORM}, "catalogs")
                outputs = await self.builder.outputs(build)
                (extensions,) = outputs["extensions-catalog-layer"]
                (overlays,) = outputs["overlays-catalog-layer"]
            else:
                cache = self.builder.state.parent
                extensions, overlays = await asyncio.gather(*(
                    asyncio.to_thread(catalog.pulled_layer, f"{version.registry}/{kind}:"
                                      f"{version.name}", cache)
                    for kind in ("extensions", "overlays")
                ))  # fmt: skip
            found = catalog.read(extensions, overlays, version.registry, version.name)
            self.catalogs[version.name] = found
        return found

    async def create(self, body: bytes) -> schematic.Schematic:
        """Parse, check that some served version's catalog lists each name, and store a
        schematic. A version without one of them refuses it when an asset is asked."""
        parsed = schematic.parse(body)
        served = [await self.catalog(self.versions.get(n)) for n in self.versions.names()]
        catalog.union(served).check(parsed.official_extensions, parsed.overlay)
        await asyncio.to_thread(self.store.put, parsed)  # a registry's, too: off the loop
        return parsed

    async def asset(self, schematic_id: str, version_text: str, path: str) -> Path:
        _check_id(schematic_id)
        version = self.versions.get(version_text)
        asset = assets.parse(path)
        build = self.builds.get((schematic_id, version.name, path))
        if build is None:
            found = await asyncio.to_thread(self.store.get, schematic_id)
            if found is None:
                raise SchematicNotFoundError("schematic not found")
            build = build_for(found, asset, await self.catalog(version), self.platforms,
                              self.extension_dir, self.keys, version)  # fmt: skip
            self.builds[(schematic_id, version.name, path)] = build
        return await self.builder.output(build)


def _check_id(schematic_id: str) -> None:
    if not ID.fullmatch(schematic_id):
        raise SchematicError(f"bad schematic ID {schematic_id[:80]!r}: 64 hex digits")


def _base(factory: Factory, request: Request) -> str:
    """The URL clients reach the factory at: --external-url, else the request's."""
    return (factory.external_url or str(request.base_url)).rstrip("/")


def _text(status: int, message: str, **headers: str) -> PlainTextResponse:
    return PlainTextResponse(message.replace("\n", " ") + "\n", status, headers=headers)


def _guarded(
    handler: Callable[[Factory, Request], Awaitable[Response]], name: str
) -> Callable[[Request], Awaitable[Response]]:
    """A route that counts its requests and answers a BuildgraphError with its status."""

    async def endpoint(request: Request) -> Response:
        factory: Factory = request.app.state.factory
        factory.requests[name] = factory.requests.get(name, 0) + 1
        try:
            return await handler(factory, request)
        except BuildgraphError as err:
            status = factory.status_of(err)
            message = err.message + (f" (hint: {err.hint})" if err.hint else "")
            headers = {"Retry-After": RETRY_AFTER} if status == 503 else {}
            return _text(status, message, **headers)

    return endpoint


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(413, f"the body is over {MAX_BODY} bytes")
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise HTTPException(413, f"the body is over {MAX_BODY} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), BODY_SECONDS)
    except TimeoutError:
        raise HTTPException(408, f"the body did not arrive within {BODY_SECONDS:g} s") from None
    return b"".join(chunks)


async def create_schematic(factory: Factory, request: Request) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if not factory.allows(token if scheme == "Bearer" else ""):
        return _text(401, "creating schematics needs the bearer token",
                     **{"WWW-Authenticate": "Bearer"})  # fmt: skip
    parsed = await factory.create(await _body(request))
    return JSONResponse({"id": parsed.id, "schematic": parsed.marshal().decode()}, 201)


async def wizard(factory: Factory, _request: Request, error: str = "") -> Response:
    newest = await factory.catalog(factory.versions.get(factory.versions.newest))
    platforms = sorted({p["platform"] for p in factory.platforms.values()})
    boards = [(f"{o.name}@{o.image}", o.name, o.image) for o in newest.overlays]
    extensions = [(e.name, e.description) for e in newest.extensions.values()]
    page = ui.form(factory.versions.names(), platforms, boards, extensions,
                   factory.keys is not None, factory.token is not None, error)  # fmt: skip
    return HTMLResponse(page, 400 if error else 200)


async def wizard_result(factory: Factory, request: Request) -> Response:
    fields = ui.parse_form(await _body(request))
    if not factory.allows(fields.get("token", [""])[0]):
        return await wizard(factory, request, "creating schematics needs the bearer token")
    document, choices = ui.schematic_document(fields)
    try:
        parsed = await factory.create(document)
    except (SchematicError, UnknownNameError) as err:
        return await wizard(factory, request, str(err))
    base = _base(factory, request)
    page = ui.result(base, parsed.id, parsed.marshal().decode(), choices)
    return HTMLResponse(page)


async def get_schematic(factory: Factory, request: Request) -> Response:
    schematic_id = request.path_params["id"]
    _check_id(schematic_id)
    found = await asyncio.to_thread(factory.store.get, schematic_id)
    if found is None:
        return _text(404, "schematic not found")
    return Response(found.marshal(), media_type="application/yaml")


async def image(factory: Factory, request: Request) -> Response:
    params = request.path_params
    path = await factory.asset(params["id"], params["version"], params["path"])
    return registry.LargeFileResponse(
        path,
        filename=params["path"],
        media_type="application/octet-stream",
        content_disposition_type="attachment",
    )


async def pxe(factory: Factory, request: Request) -> Response:
    params = request.path_params
    cmdline = assets.machine(params["path"])
    line = await factory.asset(params["id"], params["version"], assets.name(cmdline))
    base = _base(factory, request)
    prefix = f"{base}/image/{params['id']}/{params['version']}"
    args = line.read_text().strip()
    if cmdline.secureboot:
        uki = assets.name(assets.Asset("uki", cmdline.arch, cmdline.platform, True))
        lines = [f"kernel {prefix}/{uki} {args}"]
    else:
        lines = [f"kernel {prefix}/kernel-{cmdline.arch} {args}",
                 f"initrd {prefix}/initramfs-{cmdline.arch}.xz"]  # fmt: skip
    script = "\n".join(["#!ipxe", "", "imgfree", *lines, "boot", ""])
    return PlainTextResponse(script)


async def versions(factory: Factory, _request: Request) -> Response:
    return JSONResponse(factory.versions.names())


async def official_extensions(factory: Factory, request: Request) -> Response:
    found = await factory.catalog(factory.versions.get(request.path_params["version"]))
    return JSONResponse([e.to_json() for e in found.extensions.values()])


async def official_overlays(factory: Factory, request: Request) -> Response:
    found = await factory.catalog(factory.versions.get(request.path_params["version"]))
    return JSONResponse([o.to_json() for o in found.overlays])


async def healthz(_factory: Factory, _request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(factory: Factory, _request: Request) -> Response:
    await factory.catalog(factory.versions.get(factory.versions.newest))
    return PlainTextResponse("ready\n")


async def metrics(factory: Factory, _request: Request) -> Response:
    m = factory.builder.metrics
    series = [
        ("factory_requests_total", "counter",
         [(f'route="{r}"', n) for r, n in sorted(factory.requests.items())]),
        ("factory_builds_total", "counter",
         [(f'result="{r}"', n) for r, n in sorted(m.builds.items())]),
        ("factory_cache_hits_total", "counter", [("", m.cache_hits)]),
        ("factory_build_seconds_total", "counter", [("", round(m.build_seconds, 3))]),
        ("factory_builds_running", "gauge", [("", m.running)]),
        ("factory_builds_waiting", "gauge", [("", m.waiting)]),
    ]  # fmt: skip
    lines = []
    for name, kind, samples in series:
        lines.append(f"# TYPE {name} {kind}")
        lines += [f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"
                  for labels, value in samples]  # fmt: skip
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")


async def bad_path(_factory: Factory, request: Request) -> Response:
    """Whatever no route takes: 405 where a route takes the path with other methods, 400
    for the factory's own prefixes, else 404."""
    path = request.scope["path"]
    for other in request.app.routes[:-1]:
        if other.path_regex.fullmatch(path):
            allowed = ", ".join(sorted(other.methods))
            return _text(405, f"method {request.method} is not allowed on {path[:120]!r}:"
                         f" use {allowed}", Allow=allowed)  # fmt: skip
    if path.startswith(("/image/", "/pxe/", "/schematics/", "/version/", "/v2/")):
        return _text(400, f"bad path {path[:120]!r}: not an asset, schematic or PXE path")
    return _text(404, f"no such route {path[:120]!r}")


async def _http_error(_request: Request, err: Exception) -> Response:
    assert isinstance(err, HTTPException)
    return _text(err.status_code, err.detail, **(err.headers or {}))


def create_app(factory: Factory) -> _HeaderLimit:
    def route(path: str, handler, methods: list[str], name: str | None = None) -> Route:
        return Route(path, _guarded(handler, name or handler.__name__), methods=methods)

    routes = [
        route("/", wizard, ["GET"]),
        route("/ui/schematic", wizard_result, ["POST"]),
        route("/schematics", create_schematic, ["POST"]),
        route("/schematics/{id}", get_schematic, ["GET"]),
        route("/image/{id}/{version}/{path}", image, ["GET", "HEAD"]),
        route("/pxe/{id}/{version}/{path}", pxe, ["GET"]),
        route("/versions", versions, ["GET"]),
        route("/version/{version}/extensions/official", official_extensions, ["GET"]),
        route("/version/{version}/overlays/official", official_overlays, ["GET"]),
        route("/v2/", registry.base, ["GET"], "registry"),
        route("/v2/{name}/{id}/{kind}/{reference}", registry.serve, ["GET", "HEAD"], "registry"),
        route("/healthz", healthz, ["GET"]),
        route("/readyz", readyz, ["GET"]),
        route("/metrics", metrics, ["GET"]),
        route("/{prefix:path}", bad_path, ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: _http_error})
    app.state.factory = factory
    return _HeaderLimit(app)


class _HeaderLimit:
    """Refuse a request whose headers are over :data:`MAX_HEADERS` bytes (431)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            size = sum(len(k) + len(v) for k, v in scope["headers"])
            if size > MAX_HEADERS:
                answer = _text(431, f"the request's headers are over {MAX_HEADERS} bytes")
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)
