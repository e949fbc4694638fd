"""The OncoLabel server: MONAI Label's FastAPI app with our fixes, and ``oncolabel serve``.

What we change in MONAI Label's app (the REST API itself is unchanged, so ``monailabel.client`` and MONAI
Label's Slicer plugin work as before):

* Its endpoints are ``async def`` functions that run blocking work (inference, file copies) on the event loop,
  so one inference stalls every other request. :func:`offload_blocking_endpoints` re-registers each as a plain
  function that FastAPI runs in its worker thread pool; ``/info/`` then answers while an inference runs.
* Errors: OncoLabel exceptions and MONAI Label's own become 4xx answers with one readable sentence
  (:func:`install_error_handlers`) instead of a bare 500; the temporary file an upload was saved to is called
  "the uploaded file" in them, not by its server path.
* Upload sessions (``PUT /session/``) refuse an unreadable or 2D volume (:mod:`oncolabel.server.sessions`).
* Uploads over ``max_upload_mb`` are refused with 413 before they are stored (:class:`UploadLimit`).
* Compatibility with pydicom 3 and current MLflow (:mod:`oncolabel.server.compat`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from oncolabel.errors import (CheckpointError, ConflictError, InvalidInputError, ModelNotFoundError, NotFoundError,
                              OncoLabelError, PayloadTooLargeError, UnknownTaskError)
from oncolabel.server import compat

logger = logging.getLogger(__name__)

#: the MONAI Label app shipped in this repository
DEFAULT_APP_DIR = Path(__file__).resolve().parents[3] / "apps" / "oncolabel"


def _threaded(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """A plain-function twin of an ``async def`` endpoint (same signature; FastAPI runs it in a thread)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(endpoint(*args, **kwargs))

    run.__signature__ = inspect.signature(endpoint)  # type: ignore[attr-defined]
    run.__name__, run.__qualname__, run.__doc__ = endpoint.__name__, endpoint.__qualname__, endpoint.__doc__
    run.__module__ = endpoint.__module__
    return run


def offload_blocking_endpoints(app: Any) -> int:
    """Replace every ``async def`` API route of ``app`` (and of the routers it includes) by a thread-pool twin.

    Returns how many routes were replaced. Call it before the first request.
    """
    from fastapi.routing import APIRoute

    def walk(router: Any) -> int:
        replaced = 0
        for i, route in enumerate(list(router.routes)):
            inner = getattr(route, "original_router", None)  # FastAPI >= 0.12x keeps included routers by reference
            if inner is not None:
                replaced += walk(inner)
                continue
            if not isinstance(route, APIRoute) or not inspect.iscoroutinefunction(route.endpoint):
                continue
            router.routes[i] = APIRoute(
                route.path, _threaded(route.endpoint), methods=sorted(route.methods), name=route.name,
                summary=route.summary, description=route.description, tags=route.tags, responses=route.responses,
                response_class=route.response_class, include_in_schema=route.include_in_schema,
                response_model=route.response_model, status_code=route.status_code,
                dependencies=route.dependencies, deprecated=route.deprecated, operation_id=route.operation_id,
                openapi_extra=route.openapi_extra)
            replaced += 1
        return replaced

    return walk(app.router)


def _status_for(exc: Exception) -> int:
    from monailabel.interfaces.exception import ImageNotFoundException, LabelNotFoundException, MONAILabelException

    if isinstance(exc, (NotFoundError, UnknownTaskError, ImageNotFoundException, LabelNotFoundException)):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, PayloadTooLargeError):
        return 413
    if isinstance(exc, (ModelNotFoundError, CheckpointError)):
        return 503
    if isinstance(exc, MONAILabelException):
        msg = str(exc.msg if hasattr(exc, "msg") else exc)
        return 404 if "There is no" in msg or "not Initialized" in msg else 400
    if isinstance(exc, (OncoLabelError, json.JSONDecodeError)):
        return 400
    return 500


def public_detail(detail: str, *, temp_dir: str | None = None) -> str:
    """``detail`` with the server's temporary upload files called "the uploaded file": MONAI Label saves an upload
    as ``tmpXXXXXXXX.<suffix>`` (:func:`tempfile.NamedTemporaryFile`) directly in the temporary folder before our
    code reads it, and that path means nothing to the client. Other paths are left as they are."""
    root = (temp_dir or tempfile.gettempdir()).rstrip("/")
    return re.sub(re.escape(root) + r"/tmp[a-z0-9_]{8}(?:\.[A-Za-z0-9]+)*(?![\w/.])", "the uploaded file", detail)


def install_error_handlers(app: Any) -> None:
    """Turn library and MONAI Label errors into ``{"detail": sentence, "error": type}`` with a 4xx status."""
    from fastapi.responses import JSONResponse
    from monailabel.interfaces.exception import MONAILabelException

    async def handler(request: Any, exc: Exception) -> JSONResponse:
        status = _status_for(exc)
        if isinstance(exc, MONAILabelException):
            detail = str(getattr(exc, "msg", exc))
        elif isinstance(exc, json.JSONDecodeError):
            detail = f"request parameters are not valid JSON: {exc}"
        elif status == 500:
            logger.exception("unexpected error on %s", request.url.path, exc_info=exc)
            detail = f"internal error ({type(exc).__name__}); see the server log"
        else:
            detail = str(exc)
        return JSONResponse({"detail": public_detail(detail), "error": type(exc).__name__}, status_code=status)

    for exc_type in (OncoLabelError, MONAILabelException, json.JSONDecodeError, FileNotFoundError, Exception):
        app.add_exception_handler(exc_type, handler)


class _TooLarge(Exception):
    pass


class UploadLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413 (by header, or while streaming)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def _reply(self, send: Callable, started: bool) -> None:
        if started:
            return
        body = json.dumps({"detail": f"upload larger than the server limit of {self.max_bytes / 2**20:.0f} MB; "
                                     "nothing was stored", "error": "PayloadTooLargeError"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reply(send, False)
            return
        state = {"received": 0, "too_large": False, "started": False}

        async def limited_receive() -> dict:
            msg = await receive()
            if msg["type"] == "http.request":
                state["received"] += len(msg.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["too_large"] = True
                    raise _TooLarge()
            return msg

        async def guarded_send(msg: dict) -> None:
            if state["too_large"]:
                return  # swallow the error response of inner layers; ours follows
            if msg["type"] == "http.response.start":
                state["started"] = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            pass
        except Exception:
            if not state["too_large"]:
                raise
        if state["too_large"]:
            await self._reply(send, state["started"])


class QueryIdGuard:
    """ASGI middleware: the ids in query strings (``image``, ``label``, ``id``, ``tag``) must be plain names.

    MONAI Label treats an ``image`` value that is an existing server path as a file to read; an id such as
    ``../../x`` or ``/abs/path`` is therefore refused with 400 before any endpoint runs.
    """

    KEYS = ("image", "label", "id", "tag")

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope.get("query_string"):
            from urllib.parse import parse_qsl

            from oncolabel.server.datastore import check_id

            for key, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
                if key in self.KEYS and value:
                    try:
                        check_id(value, what=f"{key} id" if key != "tag" else "label tag")
                    except OncoLabelError as exc:
                        body = json.dumps({"detail": str(exc), "error": type(exc).__name__}).encode()
                        await send({"type": "http.response.start", "status": 400,
                                    "headers": [(b"content-type", b"application/json"),
                                                (b"content-length", str(len(body)).encode())]})
                        await send({"type": "http.response.body", "body": body})
                        return
        await self.app(scope, receive, send)


def configure_environment(*, app_dir: Path, studies: Path, conf: Mapping[str, str], port: int,
                          tracking_uri: str | None = None) -> None:
    """Export MONAI Label's settings (its training subprocess reads them from the environment)."""
    compat.configure_tracking(tracking_uri)
    env = {
        "MONAI_LABEL_APP_DIR": str(app_dir), "MONAI_LABEL_STUDIES": str(studies),
        "MONAI_LABEL_APP_CONF": json.dumps(dict(conf)), "MONAI_LABEL_SERVER_PORT": str(port),
        "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false", "MONAI_LABEL_AUTO_UPDATE_SCORING": "false",
        "MONAI_LABEL_SESSION_PATH": str(studies / ".oncolabel" / "sessions"),
        "MONAI_LABEL_PROJECT_NAME": "OncoLabel",
    }
    os.environ.update(env)
    # MONAI Label's task runner reads PYTHONPATH unconditionally; keep ours (editable installs need none)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(app_dir)) if p)
    from monailabel.config import settings

    settings.MONAI_LABEL_APP_DIR, settings.MONAI_LABEL_STUDIES = str(app_dir), str(studies)
    settings.MONAI_LABEL_APP_CONF, settings.MONAI_LABEL_SERVER_PORT = dict(conf), port
    settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD = False
    settings.MONAI_LABEL_AUTO_UPDATE_SCORING = False
    settings.MONAI_LABEL_SESSION_PATH = env["MONAI_LABEL_SESSION_PATH"]
    settings.MONAI_LABEL_TRACKING_ENABLED = bool(tracking_uri)
    settings.MONAI_LABEL_TRACKING_URI = tracking_uri or ""


def create_app(*, max_upload_mb: float = 1024.0) -> Any:
    """MONAI Label's FastAPI app with OncoLabel's fixes (call :func:`configure_environment` first)."""
    compat.apply()
    from monailabel.app import app  # noqa: PLC0415 -- imported after the compatibility fixes

    if not getattr(app.state, "oncolabel_patched", False):
        n = offload_blocking_endpoints(app)
        logger.info("%d blocking MONAI Label endpoints now run in the worker thread pool", n)
        install_error_handlers(app)
        app.state.oncolabel_patched = True
    return UploadLimit(QueryIdGuard(app), int(max_upload_mb * 2**20))


def serve(studies: str | Path, *, host: str = "127.0.0.1", port: int = 8000, app_dir: str | Path | None = None,
          conf: Mapping[str, str] | None = None, tracking_uri: str | None = None, log_level: str = "info",
          pacs_url: str | None = None, pacs_modality: str | Sequence[str] | None = "CT", pacs_poll_s: float = 60.0,
          pacs_query: Mapping[str, str] | None = None, pacs_labels: bool = False,
          pacs_max_series: int | None = None) -> None:
    """Start the server (blocks until stopped). Same as ``monailabel start_server`` with our fixes applied.

    With ``pacs_url`` (a DICOMweb root; or conf ``pacs_url``), the datastore ``studies`` is fed from that PACS in
    the background (:mod:`oncolabel.server.pacs_mirror`); conf ``pacs_store_labels true`` also sends final labels
    back as DICOM SEG."""
    import uvicorn

    from oncolabel.config import ServerConfig

    app_dir = Path(app_dir or DEFAULT_APP_DIR).resolve()
    if not (app_dir / "main.py").is_file():
        raise InvalidInputError(f"{app_dir}: not a MONAI Label app folder (no main.py)")
    if "://" in str(studies):
        raise InvalidInputError(f"--studies {studies}: a URL; give a local folder as --studies (the datastore, where "
                                "labels and models are kept) and the DICOMweb URL as --pacs URL")
    studies = Path(studies).resolve()
    if not studies.is_dir():
        raise InvalidInputError(f"{studies}: studies folder does not exist")
    conf = dict(conf or {})
    if pacs_url:
        conf["pacs_url"] = pacs_url  # the app's datastore sends labels back there when pacs_store_labels is set
    cfg = ServerConfig.from_conf(studies, conf)  # fail fast on a bad conf, before the server starts
    if (pacs_query or pacs_labels or pacs_max_series is not None) and not cfg.pacs_url:
        raise InvalidInputError("a PACS query, label import or series limit was asked for without a PACS (--pacs URL)")
    mirror = None
    if cfg.pacs_url:
        from oncolabel.pacs import DicomWebSource
        from oncolabel.server.pacs_mirror import PacsMirror

        mirror = PacsMirror(DicomWebSource(cfg.pacs_url), studies, modality=pacs_modality, query=pacs_query,
                            poll_s=pacs_poll_s, labels=pacs_labels, max_series=pacs_max_series)
    configure_environment(app_dir=app_dir, studies=studies, conf=conf, port=port, tracking_uri=tracking_uri)
    logger.info("OncoLabel server: app %s, studies %s, http://%s:%d", app_dir, studies, host, port)
    sys.stdout.flush()
    if mirror is not None:
        mirror.start()
    uvicorn.run(create_app(max_upload_mb=cfg.max_upload_mb), host=host, port=port, log_level=log_level,
                timeout_graceful_shutdown=5)
