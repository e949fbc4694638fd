"""Everything the module asks of the OncoLabel server, as plain functions a background job can run.

Each method takes an optional :class:`~OncoLabelLib.jobs.JobContext` for progress and cancellation, talks to the
server through the repository's one client (:mod:`OncoLabelLib.clientloader`), and returns parsed results
(:mod:`OncoLabelLib.protocol`). Nothing here touches MRML or Qt: file paths go in and come out, and the Slicer
Logic turns them into nodes on the GUI thread (:mod:`OncoLabelLib.mrml`).

Consent: every call that sends an image or a label raises :class:`ConsentRequiredError` before any byte leaves
the machine unless the user agreed for this server (:class:`OncoLabelLib.settings.ModuleSettings`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from types import ModuleType
from typing import Any, Dict, Iterable, Optional, Tuple

from OncoLabelLib.clientloader import load_client_module
from OncoLabelLib.errors import ConsentRequiredError, MissingInputError, ModuleError, NotOncoLabelServerError
from OncoLabelLib.jobs import JobCancelled, JobContext, null_context
from OncoLabelLib.protocol import (KNOWN_TASKS, ModelInfo, NextCase, ServerInfo, TaskDescription, TrainingProgress,
                                   parse_result)
from OncoLabelLib.settings import ModuleSettings, normalize_url, server_key

__all__ = ["OncoLabelService", "safe_image_id"]

logger = logging.getLogger(__name__)

CLIENT_NAME = "OncoLabel Slicer module"


def safe_image_id(name: str) -> str:
    """A datastore id from a node name (letters, digits, ``_ . -``; the server refuses anything else)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")
    if not cleaned:
        raise MissingInputError(f"the volume name {name!r} gives no usable image id: rename the volume")
    return cleaned[:120]


def _digest(paths: Iterable[str], length: int = 10) -> str:
    """Short content digest of files (SHA-1 over their bytes, in order)."""
    sha = hashlib.sha1()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()[:length]


def _ctx(ctx: Optional[JobContext]) -> JobContext:
    return ctx if ctx is not None else null_context()


class OncoLabelService:
    """One server connection, as the radiologist's workflow uses it.

    Args:
        url: server address as typed (normalised: scheme added, endpoint paths removed).
        settings: consent records (and URL history).
        token: bearer token for servers with authentication.
        timeout: seconds for short calls; ``long_timeout`` for inference, uploads and downloads.
        client_module: the ``oncolabel.client`` module (default: found by :func:`load_client_module`).
    """

    def __init__(self, url: str, settings: ModuleSettings, *, token: Optional[str] = None, timeout: float = 10.0,
                 long_timeout: float = 600.0, client_module: Optional[ModuleType] = None) -> None:
        self.url = normalize_url(url)
        self.settings, self.token = settings, token
        self.timeout, self.long_timeout = timeout, long_timeout
        self._client_module = client_module
        self.info: Optional[ServerInfo] = None

    # --- plumbing -----------------------------------------------------------------------------------------------
    @property
    def client_module(self) -> ModuleType:
        if self._client_module is None:
            self._client_module = load_client_module()
        return self._client_module

    def client(self) -> Any:
        """A fresh client (one per job: a requests session is not shared between threads)."""
        return self.client_module.OncoLabelClient(self.url, timeout=self.timeout, long_timeout=self.long_timeout,
                                                  token=self.token)

    def require_consent(self) -> None:
        """Raise :class:`ConsentRequiredError` unless the user agreed to send data to this server."""
        if not self.settings.has_consent(self.url):
            raise ConsentRequiredError(f"images and labels leave this computer only with your consent: agree to "
                                       f"send data to {server_key(self.url)} first")

    def model(self, name: str, kind: Optional[str] = None) -> ModelInfo:
        """The model as the connected server describes it; unconnected, as the module knows it."""
        if self.info is not None:
            return self.info.model(name, kind)
        task = KNOWN_TASKS.get(name) or TaskDescription(name, kind or "other", name)
        return ModelInfo(name=name, kind=task.kind if task.kind != "other" else kind, labels={}, model_version="",
                         description="", task=task)

    # --- connection ---------------------------------------------------------------------------------------------
    def connect(self, ctx: Optional[JobContext] = None) -> ServerInfo:
        """``/info/``, checked: an OncoLabel server of a supported version. Caches it in :attr:`info`."""
        _ctx(ctx).progress(None, f"Connecting to {self.url}")
        errors = self.client_module
        try:
            raw = self.client().info()
        except errors.ServerRequestError as exc:
            if exc.status == 404:
                raise NotOncoLabelServerError(f"the server at {self.url} answers, but has no /info/ page: it is "
                                              "not an OncoLabel server (check the address and port)") from exc
            raise
        except ValueError as exc:  # an answer that is not JSON: a web page, another service
            raise NotOncoLabelServerError(f"the address {self.url} answers, but not as an OncoLabel server: "
                                          "check the address and port") from exc
        self.info = ServerInfo.from_info(self.url, raw)
        logger.info("connected to %s: OncoLabel %s, models %s", self.url, self.info.version, sorted(self.info.models))
        return self.info

    def login(self, username: str, password: str, ctx: Optional[JobContext] = None) -> None:
        """Exchange user name and password for a token (kept in memory only)."""
        _ctx(ctx).progress(None, f"Logging in to {self.url}")
        self.token = self.client().login(username, password)

    # --- segmentation workflow ----------------------------------------------------------------------------------
    def next_case(self, strategy: str, download_dir: str, ctx: Optional[JobContext] = None) -> Tuple[NextCase, str]:
        """The image the strategy proposes, downloaded into ``download_dir``; returns ``(case, path)``."""
        ctx = _ctx(ctx)
        ctx.progress(None, f"Asking the '{strategy}' strategy for the next case")
        client = self.client()
        case = NextCase.from_json(client.next_sample(strategy), strategy)
        if case is None:
            raise ModuleError("every image on the server has a label: nothing is left to annotate")
        ctx.check()
        ctx.progress(None, f"Downloading {case.image_id}")
        os.makedirs(download_dir, exist_ok=True)
        path = client.download_image(case.image_id, os.path.join(download_dir, case.image_id + case.suffix))
        return case, path

    def infer(self, model: str, *, image_id: Optional[str] = None, file: Optional[str] = None,
              mask_file: Optional[str] = None, ctx: Optional[JobContext] = None) -> Any:
        """Run ``model`` on a datastore image or an uploaded file (plus a mask for scoring tasks).

        Returns a :class:`SegmentationResult`, :class:`ClassificationResult` or :class:`ScoreResult`.
        """
        ctx = _ctx(ctx)
        info = self.model(model)
        if info.task.needs_mask and mask_file is None:
            raise MissingInputError(f"'{model}' needs the tumour segment: pick the segmentation and the segment")
        if file is not None or mask_file is not None:
            self.require_consent()
        ctx.progress(None, f"Running {model}" + (f" on {image_id}" if image_id else ""))
        label_path, params = self.client().infer(model, image_id, file=file, label_file=mask_file)
        ctx.check()
        return parse_result(info.kind or "", model, label_path, params, info)

    def infer_case(self, model: str, files: Dict[str, str], *, case: str, ctx: Optional[JobContext] = None) -> Any:
        """A task that reads several inputs from the datastore (phases; an image and its tumour mask).

        Each input file is stored where the server looks for it (:meth:`TaskDescription.datastore_layout`) under a
        case id made of ``case`` and a digest of the files (the same volumes map to the same id, so sending them
        again reuses what the server holds); then the model runs on the case.
        """
        ctx = _ctx(ctx)
        task = self.model(model).task
        missing = [name for name in task.inputs if name not in files]
        if missing:
            raise MissingInputError(f"'{model}' needs {', '.join(task.inputs)}: select {', '.join(missing)}")
        self.require_consent()
        case_id = f"{safe_image_id(case)[:80]}_{_digest(files[name] for name in task.inputs)}"
        client = self.client()
        for name, (image_id, tag) in task.datastore_layout(case_id).items():
            ctx.check()
            ctx.progress(None, f"Sending {name} as {image_id}" + (f" ({tag})" if tag else ""))
            params = {"task": model, "client": CLIENT_NAME}
            if tag is not None:
                client.save_label(image_id, files[name], tag=tag, params=params)
                continue
            try:
                client.upload_image(files[name], image_id, params=params)
            except self.client_module.ServerRequestError as exc:
                if exc.status != 409:  # 409: the server holds these very volumes (the id carries their digest)
                    raise
        return self.infer(model, image_id=task.primary_image_id(case_id), ctx=ctx)

    def submit_label(self, image_id: str, label_path: str, *, image_path: Optional[str] = None,
                     annotator: Optional[str] = None, ctx: Optional[JobContext] = None) -> Dict[str, Any]:
        """Send a corrected label; with ``image_path``, first upload the image under ``image_id`` (a local case)."""
        ctx = _ctx(ctx)
        self.require_consent()
        client = self.client()
        if image_path is not None:
            ctx.progress(None, f"Uploading image {image_id}")
            client.upload_image(image_path, image_id, params={"client": CLIENT_NAME})
            ctx.check()
        ctx.progress(None, f"Submitting the label of {image_id}")
        return client.save_label(image_id, label_path, params={"annotator": annotator or "", "client": CLIENT_NAME})

    # --- training -----------------------------------------------------------------------------------------------
    def train(self, model: str, *, max_iterations: Optional[int] = None, params: Optional[Dict[str, Any]] = None,
              poll: float = 0.5, timeout: float = 24 * 3600.0, ctx: Optional[JobContext] = None) -> TrainingProgress:
        """Start a training round and follow it to the end; cancelling the job stops the round on the server."""
        ctx = _ctx(ctx)
        if self.info is not None and model not in self.info.trainers:
            raise ModuleError(f"the server cannot train '{model}' (it trains: "
                              f"{', '.join(self.info.trainers) or 'nothing'})")
        request = dict(params or {})
        if max_iterations is not None:
            request["max_iterations"] = int(max_iterations)
        client = self.client()
        ctx.progress(0.0, f"Starting a training round of {model}")
        task = client.train_start(model, request)
        total = request.get("max_iterations")

        def on_progress(status: Dict[str, Any]) -> None:
            progress = TrainingProgress.from_status(status, total)
            ctx.progress(progress.fraction, progress.message)

        try:
            status = client.wait_for_training(task.get("id"), timeout=timeout, poll=poll, on_progress=on_progress,
                                              should_cancel=lambda: ctx.cancelled)
        except self.client_module.TrainingFailedError:
            if ctx.cancelled:
                raise JobCancelled("training stopped on the server at the user's request") from None
            raise
        done = TrainingProgress.from_status(status, total)
        if self.info is not None:
            try:
                self.connect()  # the served model changed: refresh model versions
            except Exception as exc:  # noqa: BLE001 -- the round itself succeeded
                logger.warning("could not refresh /info/ after training: %s", exc)
        return done
