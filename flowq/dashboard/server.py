"""The dashboard's web application: a few pages (one HTML shell, hand-written JS drawing
SVG, shipped in the package) and the JSON API behind them.

==============================================  ===========================================
``GET /api/config``                              the app, the broker, whether actions are on
``GET /api/workers``                             workers: status, pool, processed, load
``GET /api/queues``                              queue lengths, dead-letter queues, delayed
``GET /api/workflows?limit=50``                  recent workflows, newest first
``GET /api/workflows/<root_id>``                 one workflow: nodes with live states, edges
``GET /api/workflows/<root_id>/nodes/<index>``   one node: call, result or traceback
``POST /api/workflows/<root_id>/revoke``         (``--enable-actions``) revoke the workflow
``POST /api/tasks/<task_id>/revoke``             (``--enable-actions``) revoke one task
``POST /api/workflows/<root_id>/resume``         (``--enable-actions``) run again what failed
==============================================  ===========================================

Read-only unless built with ``actions=True``. An action must carry the header
``X-Flowq-Action: 1`` (a page of another site cannot send it without the browser asking
first) and, if the browser says where it comes from (``Origin``), come from this host.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowq.dashboard import views
from flowq.dashboard.auth import Credentials, RequireAuth
from flowq.dashboard.monitor import Monitor
from flowq.exceptions import BackendUnavailable, BrokerUnavailable, FlowqError, ResumeRefused
from flowq.runtime import broker

if TYPE_CHECKING:
    from flowq.app import Flowq

STATIC = resources.files("flowq.dashboard").joinpath("static")
PAGES = ("/", "/workers", "/queues", "/workflows", "/workflows/{root_id}")
ACTION_HEADER = "x-flowq-action"


def create_app(app: Flowq, *, credentials: Credentials | None = None, actions: bool = False,
               monitor: Monitor | None = None) -> Starlette:
    """The dashboard of ``app`` as an ASGI application (its monitor runs while it serves)."""
    monitor = monitor or Monitor(app)
    credentials = credentials or Credentials()
    shell = STATIC.joinpath("index.html").read_text()

    def page(request: Request) -> Response:
        return HTMLResponse(shell)

    def config(request: Request) -> Response:
        return JSONResponse({"app": app.main, "broker": broker.describe(app.conf),
                             "backend": app.runtime.backend.url, "actions": actions,
                             "error": monitor.error, "stuck_after": monitor.stuck_after})

    def workers(request: Request) -> Response:
        return JSONResponse({**views.workers(monitor), "error": monitor.error})

    def queues(request: Request) -> Response:
        return JSONResponse({**views.queues(monitor), "error": monitor.error})

    def workflows(request: Request) -> Response:
        limit = _int(request.query_params.get("limit"), 50)
        return JSONResponse(views.workflows(app, monitor, max(1, min(limit, 1000))))

    def workflow(request: Request) -> Response:
        root_id = request.path_params["root_id"]
        return _found(views.workflow(app, monitor, root_id), _untracked(root_id))

    def node(request: Request) -> Response:
        root_id, index = request.path_params["root_id"], request.path_params["index"]
        return _found(views.node(app, root_id, index),
                      f"workflow {root_id} has no node {index}, or is not tracked")

    def revoke_workflow(request: Request) -> Response:
        root_id = request.path_params["root_id"]
        app.control.revoke_workflow(root_id, terminate=_flag(request, "terminate"))
        return JSONResponse({"ok": f"revoked workflow {root_id}"})

    def resume(request: Request) -> Response:
        from flowq.runtime.resume import resume as resume_workflow

        root_id = request.path_params["root_id"]
        try:
            done = resume_workflow(app, root_id)
        except ResumeRefused as refused:
            return JSONResponse({"error": str(refused)}, 409)
        return JSONResponse({"ok": f"resumed workflow {root_id}", "rerun": done.rerun,
                             "reused": done.reused})

    def revoke_task(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        app.control.revoke(task_id, terminate=_flag(request, "terminate"))
        return JSONResponse({"ok": f"revoked task {task_id}"})

    routes: list[Any] = [Route(path, page) for path in PAGES]
    routes += [Route("/api/config", config), Route("/api/workers", workers),
               Route("/api/queues", queues), Route("/api/workflows", workflows),
               Route("/api/workflows/{root_id}", workflow),
               Route("/api/workflows/{root_id}/nodes/{index:int}", node),
               Mount("/static", StaticFiles(directory=str(STATIC)), name="static")]
    if actions:
        routes += [Route("/api/workflows/{root_id}/revoke", _action(revoke_workflow),
                         methods=["POST"]),
                   Route("/api/workflows/{root_id}/resume", _action(resume), methods=["POST"]),
                   Route("/api/tasks/{task_id}/revoke", _action(revoke_task), methods=["POST"])]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        monitor.start()
        try:
            yield
        finally:
            monitor.stop()

    return Starlette(routes=routes, lifespan=lifespan,
                     middleware=[Middleware(RequireAuth, credentials=credentials)],
                     exception_handlers={FlowqError: _error})


def _action(endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
    """``endpoint``, refused (403) without the action header or from another origin."""
    def guarded(request: Request) -> Response:
        if request.headers.get(ACTION_HEADER) != "1":
            return JSONResponse({"error": f"actions need the header {ACTION_HEADER}: 1"}, 403)
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return JSONResponse({"error": f"actions from {origin} are not accepted"}, 403)
        return endpoint(request)
    return guarded


def _found(doc: dict[str, Any] | None, missing: str) -> Response:
    return JSONResponse(doc) if doc is not None else JSONResponse({"error": missing}, 404)


def _untracked(root_id: str) -> str:
    return (f"no workflow with root id {root_id} is tracked (a single task, one sent from "
            f"inside a task, another app or backend, or expired after result_expires)")


async def _error(request: Request, exc: Exception) -> Response:
    unavailable = isinstance(exc, (BrokerUnavailable, BackendUnavailable))
    return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 503 if unavailable else 500)


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def serve(app: Flowq, host: str, port: int, *, credentials: Credentials, actions: bool,
          monitor: Monitor) -> None:
    """Serve the dashboard until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.run(create_app(app, credentials=credentials, actions=actions, monitor=monitor),
                host=host, port=port, log_level="warning", access_log=False)
