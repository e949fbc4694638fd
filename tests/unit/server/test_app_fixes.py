"""The server-side fixes: pydicom 3 shim, tracking config, endpoint offloading, error mapping, upload limit, id guard."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

pytest.importorskip("monailabel")
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from oncolabel.errors import ConflictError, InvalidInputError, NotFoundError  # noqa: E402
from oncolabel.server import compat  # noqa: E402
from oncolabel.server.app import (QueryIdGuard, UploadLimit, install_error_handlers,  # noqa: E402
                                  offload_blocking_endpoints, public_detail)


def test_pydicom3_shim_lets_pydicom_seg_import():
    import pydicom.uid

    compat.install_pydicom_compat()
    import pydicom_seg  # noqa: F401  (fails on pydicom 3 without the shim)
    from pydicom._storage_sopclass_uids import SegmentationStorage

    assert SegmentationStorage == pydicom.uid.SegmentationStorage
    assert compat.install_pydicom_compat() is False  # idempotent


def test_tracking_configuration(monkeypatch):
    monkeypatch.delenv("MONAI_LABEL_TRACKING_URI", raising=False)
    compat.configure_tracking(None)
    assert os.environ["MONAI_LABEL_TRACKING_ENABLED"] == "false"
    compat.configure_tracking("sqlite:////tmp/x.db")
    assert os.environ["MONAI_LABEL_TRACKING_URI"] == "sqlite:////tmp/x.db"
    with pytest.raises(InvalidInputError, match="tracking URI"):
        compat.configure_tracking("mlruns")
    compat.configure_tracking(None)


def _app() -> FastAPI:
    from fastapi import APIRouter

    app = FastAPI()
    router = APIRouter(prefix="/sub")
    state = {"loop_threads": [], "started": threading.Event(), "release": threading.Event(), "released": []}

    @router.get("/slow")
    async def slow():  # blocking work inside async def, as MONAI Label does
        state["loop_threads"].append(threading.current_thread().name)
        state["started"].set()
        # blocks until the test releases it (after /fast answered); on the event loop it would block /fast instead
        state["released"].append(state["release"].wait(timeout=20))
        return {"ok": True}

    @app.get("/fast")
    async def fast():
        return {"ok": True}

    @app.get("/raise/{kind}")
    async def boom(kind: str):
        raise {"notfound": NotFoundError("image 'x' is not in the datastore"), "conflict": ConflictError("exists"),
               "bad": InvalidInputError("bad value 3"), "other": RuntimeError("secret internals")}[kind]

    @app.post("/upload")
    async def upload(request: Request, image: str = ""):
        return {"image": image, "bytes": len(await request.body())}

    app.include_router(router)
    app.state.test_state = state
    return app


def test_offloaded_endpoint_does_not_block_others():
    app = _app()
    assert offload_blocking_endpoints(app) == 4
    state = app.state.test_state
    with TestClient(app) as client:
        t = threading.Thread(target=lambda: client.get("/sub/slow"))
        t.start()
        assert state["started"].wait(timeout=20)
        # /fast answers while /slow is still blocked: no timing threshold (a loaded CI machine made one flaky)
        assert client.get("/fast").json() == {"ok": True}
        state["release"].set()
        t.join()
    assert state["released"] == [True]  # /slow was still waiting when /fast had answered
    assert state["loop_threads"] and state["loop_threads"][0] != "MainThread"


def test_errors_become_4xx_with_a_sentence():
    app = _app()
    install_error_handlers(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        for kind, status in (("notfound", 404), ("conflict", 409), ("bad", 400), ("other", 500)):
            r = client.get(f"/raise/{kind}")
            assert r.status_code == status
        assert "secret" not in r.json()["detail"]  # internals are logged, not shown


def test_error_details_call_a_temporary_upload_the_uploaded_file():
    """MONAI Label saves an upload as tmpXXXXXXXX.<suffix> in the temporary folder; errors named that server path
    (e.g. '/tmp/tmpi8fu1812.nii.gz: not a valid NIfTI file'). Other paths, under /tmp too, are kept."""
    import tempfile

    tmp = tempfile.gettempdir()
    assert public_detail(f'{tmp}/tmpi8fu1812.nii.gz: not a valid NIfTI file (type of "{tmp}/tmpi8fu1812.nii.gz")') \
        == 'the uploaded file: not a valid NIfTI file (type of "the uploaded file")'
    assert public_detail(f"image 'x1': {tmp}/tmp_b12cd34.nrrd: bad") == "image 'x1': the uploaded file: bad"
    for kept in (f"{tmp}/tmpab12cd34/studies/case.nii.gz: bad", f"{tmp}/pytest-of-x/tmpab12cd34.nii: bad",
                 "/data/tmpab12cd34.nii.gz: bad", f"{tmp}/tmpab12cd345.nii.gz"):
        assert public_detail(kept) == kept


def test_upload_limit_by_header_and_by_stream():
    app = UploadLimit(_app(), max_bytes=1000)
    with TestClient(app) as client:
        assert client.post("/upload", content=b"x" * 500).status_code == 200
        r = client.post("/upload", content=b"x" * 5000)
        assert r.status_code == 413 and "limit" in r.json()["detail"]

        def chunks():  # no Content-Length: counted while streaming
            for _ in range(10):
                yield b"y" * 400

        r = client.post("/upload", content=chunks())
        assert r.status_code == 413


@pytest.mark.parametrize("query, ok", [("image=case_01", True), ("image=../x", False), ("image=/etc/passwd", False),
                                       ("tag=final", True), ("tag=..%2F..%2Fx", False), ("label=a%5Cb", False)])
def test_query_id_guard(query, ok):
    app = QueryIdGuard(_app())
    with TestClient(app) as client:
        r = client.post(f"/upload?{query}")
        assert (r.status_code == 200) is ok
        if not ok:
            assert r.status_code == 400 and "not allowed" in r.json()["detail"]


def test_threaded_wrapper_keeps_signature():
    from oncolabel.server.app import _threaded

    async def endpoint(model: str, image: str = "") -> dict:
        await asyncio.sleep(0)
        return {"model": model, "image": image}

    run = _threaded(endpoint)
    import inspect

    assert list(inspect.signature(run).parameters) == ["model", "image"] and not inspect.iscoroutinefunction(run)
    assert run("m", image="i") == {"model": "m", "image": "i"}
