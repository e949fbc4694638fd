"""The one HTTP client of the OncoLabel server (MONAI Label REST API).

Used by the CLI, the demo, the tests and the 3D Slicer module. Requires only the standard library and
``requests`` (bundled with 3D Slicer); the syntax stays within Python 3.9 so that Slicer 5.8 can import it.

Errors are raised as :class:`ClientError` subclasses whose message is one sentence a user can act on; the
server's own detail is kept in ``.detail``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, Optional, Tuple

import requests

__all__ = ["OncoLabelClient", "ClientError", "ServerUnavailableError", "ServerRequestError", "AuthError",
           "TrainingFailedError"]


class ClientError(Exception):
    """Base class of client errors."""

    def __init__(self, message: str, *, status: Optional[int] = None, detail: Any = None) -> None:
        super().__init__(message)
        self.status, self.detail = status, detail


class ServerUnavailableError(ClientError):
    """No server answered at the URL (not running, wrong host/port, or an address such as 0.0.0.0)."""


class AuthError(ClientError):
    """The server refused the credentials (401/403)."""


class ServerRequestError(ClientError):
    """The server answered with an error status (4xx/5xx)."""


class TrainingFailedError(ClientError):
    """A training round ended with an error."""


def _detail(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    if isinstance(body, dict) and "detail" in body:
        d = body["detail"]
        return d if isinstance(d, str) else json.dumps(d)
    return json.dumps(body)[:300]


class OncoLabelClient:
    """Client of one server.

    Args:
        url: server base URL, e.g. ``http://127.0.0.1:8000``.
        timeout: seconds to wait for a normal answer (inference and uploads use ``long_timeout``).
        long_timeout: seconds for inference, uploads and training calls.
        token: optional bearer token (servers started with authentication).
    """

    def __init__(self, url: str, *, timeout: float = 10.0, long_timeout: float = 600.0,
                 token: Optional[str] = None) -> None:
        url = url.strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.url, self.timeout, self.long_timeout, self.token = url, timeout, long_timeout, token
        self._session = requests.Session()

    # --- plumbing -------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, long: bool = False, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        host = self.url.split("://", 1)[1].split("/", 1)[0]
        if host.startswith("0.0.0.0"):
            raise ServerUnavailableError(f"{self.url}: 0.0.0.0 is a listening address, not one to connect to; "
                                         "use 127.0.0.1 or the server's host name")
        try:
            resp = self._session.request(method, self.url + path, headers=headers,
                                         timeout=self.long_timeout if long else self.timeout, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            raise ServerUnavailableError(f"no OncoLabel server answers at {self.url}: is it running "
                                         "(oncolabel serve) and is the address right?", detail=str(exc)) from exc
        except requests.exceptions.Timeout as exc:
            raise ServerUnavailableError(f"the server at {self.url} did not answer within "
                                         f"{self.long_timeout if long else self.timeout:.0f} s", detail=str(exc)) from exc
        if resp.status_code in (401, 403):
            raise AuthError(f"the server refused the credentials ({resp.status_code}): log in again",
                            status=resp.status_code, detail=_detail(resp))
        if resp.status_code >= 400:
            detail = _detail(resp)
            raise ServerRequestError(f"{detail} (HTTP {resp.status_code})", status=resp.status_code, detail=detail)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._request(method, path, **kwargs)
        return resp.json() if resp.content else {}

    # --- information ------------------------------------------------------------------------------------------
    def info(self) -> Dict[str, Any]:
        """``GET /info/``: models, trainers, strategies, datastore status."""
        return self._json("GET", "/info/")

    def auth_enabled(self) -> bool:
        """``GET /auth/``: whether the server asks for a token."""
        return bool(self._json("GET", "/auth/").get("enabled"))

    def login(self, username: str, password: str) -> str:
        """Exchange a user name and password for a bearer token (``POST /auth/token``); keeps and returns it."""
        res = self._json("POST", "/auth/token", data={"username": username, "password": password,
                                                       "grant_type": "password"})
        token = res.get("access_token") if isinstance(res, dict) else None
        if not token:
            raise AuthError("the server issued no token: authentication is not enabled on it", detail=res)
        self.token = str(token)
        return self.token

    def ping(self) -> float:
        """Round-trip time of ``/info/`` in seconds."""
        t = time.perf_counter()
        self.info()
        return time.perf_counter() - t

    def wait_until_ready(self, timeout: float = 120.0, *, process: Any = None) -> Dict[str, Any]:
        """Poll ``/info/`` until the server answers; fail early if ``process`` (a Popen) has exited."""
        deadline = time.monotonic() + timeout
        last: Optional[Exception] = None
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise ServerUnavailableError(f"the server process exited with status {process.returncode} "
                                             "before it answered")
            try:
                return self.info()
            except ServerUnavailableError as exc:
                last = exc
                time.sleep(0.25)
        raise ServerUnavailableError(f"no answer from {self.url} within {timeout:.0f} s", detail=str(last))

    # --- active learning ---------------------------------------------------------------------------------------
    def next_sample(self, strategy: str = "uncertainty", params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return self._json("POST", f"/activelearning/{strategy}", json=params or {}, long=True)

    # --- inference ---------------------------------------------------------------------------------------------
    def infer(self, model: str, image_id: Optional[str] = None, *, file: Optional[str] = None,
              params: Optional[Dict[str, Any]] = None, label_out: Optional[str] = None,
              label_file: Optional[str] = None) -> Tuple[Optional[str], Dict[str, Any]]:
        """Run ``model`` on a datastore image (``image_id``) or an uploaded ``file``.

        ``label_file`` is uploaded as the request's ``label`` part (e.g. the tumour mask a scoring task needs).
        Returns ``(label_path, result_json)``; the label image (if the task returns one) is written to
        ``label_out`` (default: a temporary ``.nii.gz``).
        """
        if (image_id is None) == (file is None):
            raise ValueError("give exactly one of image_id or file")
        query = {"image": image_id or "", "output": "all"}
        data = {"params": json.dumps(params or {})}
        files = {}
        handles = []
        try:
            for part, path in (("file", file), ("label", label_file)):
                if path is not None:
                    handles.append(open(path, "rb"))
                    files[part] = (os.path.basename(path), handles[-1])
            resp = self._request("POST", f"/infer/{model}", params=query, data=data, files=files or None, long=True)
        finally:
            for handle in handles:
                handle.close()
        return self._split_multipart(resp, label_out)

    @staticmethod
    def _split_multipart(resp: requests.Response, label_out: Optional[str]) -> Tuple[Optional[str], Dict[str, Any]]:
        ctype = resp.headers.get("content-type", "")
        if "multipart" not in ctype:
            return None, resp.json() if resp.content else {}
        from email.parser import BytesParser
        from email.policy import HTTP

        msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + resp.content)
        params: Dict[str, Any] = {}
        label_path = None
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if name == "params":
                params = json.loads(payload.decode())
            elif payload:
                fname = part.get_filename() or "label.nii.gz"
                suffix = ".nii.gz" if fname.endswith(".nii.gz") else os.path.splitext(fname)[1]
                if label_out is None:
                    import tempfile

                    fd, label_out = tempfile.mkstemp(suffix=suffix, prefix="oncolabel_")
                    os.close(fd)
                with open(label_out, "wb") as fh:
                    fh.write(payload)
                label_path = label_out
        return label_path, params

    # --- datastore ---------------------------------------------------------------------------------------------
    def datastore(self) -> Dict[str, Any]:
        return self._json("GET", "/datastore/", params={"output": "all"})

    def upload_image(self, path: str, image_id: Optional[str] = None, params: Optional[Dict[str, Any]] = None) -> str:
        with open(path, "rb") as fh:
            res = self._json("PUT", "/datastore/", params={"image": image_id} if image_id else None,
                             data={"params": json.dumps(params or {})},
                             files={"file": (os.path.basename(path), fh)}, long=True)
        return res["image"]

    def save_label(self, image_id: str, label_path: str, *, tag: str = "final",
                   params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Submit a (corrected) label for ``image_id``; every submission is kept as a new version."""
        with open(label_path, "rb") as fh:
            return self._json("PUT", "/datastore/label", params={"image": image_id, "tag": tag},
                              data={"params": json.dumps(params or {})},
                              files={"label": (os.path.basename(label_path), fh)}, long=True)

    def label_info(self, image_id: str, tag: str = "final") -> Dict[str, Any]:
        return self._json("GET", "/datastore/label/info", params={"label": image_id, "tag": tag})

    def download_label(self, image_id: str, dest: str, tag: str = "final") -> str:
        return self._download("/datastore/label", {"label": image_id, "tag": tag}, dest)

    def download_image(self, image_id: str, dest: str) -> str:
        """Write the datastore image ``image_id`` to ``dest`` (keep its extension: ``.nii.gz``, ``.nrrd``)."""
        return self._download("/datastore/image", {"image": image_id}, dest)

    def _download(self, path: str, query: Dict[str, str], dest: str) -> str:
        resp = self._request("GET", path, params=query, long=True)
        with open(dest, "wb") as fh:
            fh.write(resp.content)
        return dest

    # --- training ----------------------------------------------------------------------------------------------
    def train_start(self, model: str, params: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        return self._json("POST", f"/train/{model}", json=params or {})

    def train_status(self, check_if_running: bool = False) -> Any:
        return self._json("GET", "/train/", params={"check_if_running": str(check_if_running).lower()})

    def train_stop(self) -> Any:
        return self._json("DELETE", "/train/")

    def wait_for_training(self, task_id: Optional[str] = None, *, timeout: float = 1800.0,
                          poll: float = 1.0, on_progress: Any = None, should_cancel: Any = None) -> Dict[str, Any]:
        """Poll until the (latest) training task ends; returns its status record.

        Raises:
            TrainingFailedError: the round ended with ERROR or was stopped.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if should_cancel is not None and should_cancel():
                self.train_stop()
                raise TrainingFailedError("training cancelled by the user")
            status = self.train_status()
            if isinstance(status, dict) and (task_id is None or status.get("id") == task_id):
                if on_progress is not None:
                    on_progress(status)
                state = status.get("status")
                if state == "DONE":
                    return status
                if state in ("ERROR", "STOPPED"):
                    tail = [d for d in status.get("details", []) if "Error" in d or "error" in d][-1:]
                    raise TrainingFailedError(f"training ended with {state}" + (f": {tail[0]}" if tail else ""),
                                              detail=status)
            time.sleep(poll)
        raise TrainingFailedError(f"training did not finish within {timeout:.0f} s")
