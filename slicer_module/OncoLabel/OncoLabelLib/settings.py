"""Connection settings kept between sessions: server URL history, and the user's consent per server.

Stored as one small JSON file (Slicer's user settings folder when run in Slicer, ``~/.oncolabel/slicer.json``
otherwise), written atomically. Tokens and passwords are never written.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

__all__ = ["ModuleSettings", "normalize_url", "server_key", "DEFAULT_URL", "HISTORY_SIZE"]

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
HISTORY_SIZE = 10
_ENDPOINT_SUFFIXES = ("/info", "/docs", "/info/", "/docs/")


def normalize_url(text: str) -> str:
    """A server base URL from what a user typed: scheme added, endpoint paths and trailing slashes removed.

    >>> normalize_url(" localhost:8000/info/ ")
    'http://localhost:8000'
    """
    url = (text or "").strip()
    if not url:
        raise ValueError("the server address is empty: type one, e.g. http://127.0.0.1:8000")
    if "://" not in url:
        url = "http://" + url
    for suffix in _ENDPOINT_SUFFIXES:
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url.rstrip("/")


def server_key(url: str) -> str:
    """The identity of a server for remembered consent: scheme, host and port (``http://host:port``)."""
    parts = urlsplit(normalize_url(url))
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def default_settings_path() -> str:
    return os.path.join(os.path.expanduser("~"), ".oncolabel", "slicer.json")


class ModuleSettings:
    """URL history and consent records, persisted in ``path`` (JSON).

    Args:
        path: the settings file; created on the first :meth:`save`.
    """

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path or default_settings_path()
        self._data: Dict[str, Any] = {"url_history": [], "consent": {}}
        self.load()

    # --- persistence --------------------------------------------------------------------------------------------
    def load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable OncoLabel settings %s: %s", self.path, exc)
            return
        if isinstance(data, dict):
            self._data["url_history"] = [u for u in data.get("url_history", []) if isinstance(u, str)]
            self._data["consent"] = {k: v for k, v in dict(data.get("consent", {})).items() if isinstance(v, dict)}

    def save(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".oncolabel-settings-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self._data, fh, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    # --- URL history --------------------------------------------------------------------------------------------
    @property
    def url_history(self) -> List[str]:
        """Most recent first."""
        return list(self._data["url_history"])

    @property
    def last_url(self) -> str:
        return self._data["url_history"][0] if self._data["url_history"] else DEFAULT_URL

    def remember_url(self, url: str) -> str:
        """Put ``url`` (normalised) first in the history, keeping at most :data:`HISTORY_SIZE`; returns it."""
        url = normalize_url(url)
        history = [u for u in self._data["url_history"] if u != url]
        self._data["url_history"] = [url] + history[: HISTORY_SIZE - 1]
        return url

    # --- consent ------------------------------------------------------------------------------------------------
    def has_consent(self, url: str) -> bool:
        """Whether the user agreed that images and labels may be sent to this server."""
        return server_key(url) in self._data["consent"]

    def grant_consent(self, url: str, *, user: Optional[str] = None) -> None:
        self._data["consent"][server_key(url)] = {
            "granted_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "user": user or os.environ.get("USER") or os.environ.get("USERNAME") or "",
        }

    def revoke_consent(self, url: str) -> None:
        self._data["consent"].pop(server_key(url), None)

    def consented_servers(self) -> List[str]:
        return sorted(self._data["consent"])
