"""The module's own errors, and the one function that turns any error into a sentence a radiologist can act on.

Errors are raised next to the bad input (in the Lib, the client or the server) and caught only at the widget
edge, which shows :func:`describe`'s ``text`` and offers its ``details``. Client errors are recognised by class
name, so that the mapping holds whichever copy of ``oncolabel.client`` was loaded (installed, checkout or
bundled, see :mod:`OncoLabelLib.clientloader`).
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from typing import Optional

__all__ = ["ModuleError", "ClientUnavailableError", "ConsentRequiredError", "NotOncoLabelServerError",
           "VersionMismatchError", "UnknownModelError", "ResultFormatError", "MissingInputError", "UserMessage",
           "describe", "sentence"]


class ModuleError(Exception):
    """Base class of the module's errors; the message is already one sentence for the user."""


class ClientUnavailableError(ModuleError):
    """The OncoLabel HTTP client (``oncolabel.client``) could not be found."""


class ConsentRequiredError(ModuleError):
    """An image or label would leave the machine, but the user has not agreed for this server."""


class NotOncoLabelServerError(ModuleError):
    """Something answers at the URL, but it is not an OncoLabel (MONAI Label) server."""


class VersionMismatchError(ModuleError):
    """The server's OncoLabel version is not one this module supports."""


class UnknownModelError(ModuleError):
    """A task or model name the connected server does not offer."""


class ResultFormatError(ModuleError):
    """The server's answer lacks a field the module needs (server and module versions differ)."""


class MissingInputError(ModuleError):
    """An input the task needs was not selected (volume, phase, segment)."""


@dataclass(frozen=True)
class UserMessage:
    """What the widget shows: one sentence, and the technical details behind a "Details" button."""

    text: str
    details: str


_PATH_PREFIX = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s:\"']+:\s*")
_PATH_ASIDE = re.compile(r"\s*\([^()]*[\\/][^()]*\)")
_MODEL = re.compile(r"model '([^']+)'")
_STRATEGY = re.compile(r"strategy '([^']+)'")


def sentence(text: str, limit: int = 240) -> str:
    """``text`` as one sentence: single line, capitalised, ending with a full stop, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[:limit - 1].rstrip(" ,;:") + "…"
    if not text:
        return "Unknown error."
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?…" else text + "."


def clean_detail(detail: object) -> str:
    """The server's detail without temporary file paths, library tracebacks or HTTP suffixes."""
    text = str(detail or "").strip()
    text = re.sub(r"\s*\(HTTP \d{3}\)$", "", text)
    text = text.split("sitk::ERROR")[0]
    text = _PATH_ASIDE.sub("", _PATH_PREFIX.sub("", text))  # server-side file paths mean nothing to the user
    return text.strip(" :;,.")


def _class_names(exc: BaseException) -> set:
    return {cls.__name__ for cls in type(exc).__mro__}


def _server_request_text(exc: BaseException, url: str) -> str:
    status = getattr(exc, "status", None)
    detail = clean_detail(getattr(exc, "detail", None) or str(exc))
    if status == 404:
        model, strategy = _MODEL.search(detail), _STRATEGY.search(detail)
        if model:
            return (f"the server has no model '{model.group(1)}': reconnect to refresh the list of models "
                    "it offers")
        if strategy:
            return f"the server has no active-learning strategy '{strategy.group(1)}': pick one it lists"
        if "No Train Tasks" in detail:
            return "no training round has run on this server yet"
        return f"the server could not find what was asked for: {detail}"
    if status == 429:
        return "a training round is already running on the server: wait for it to finish or stop it"
    if status == 413:
        return f"the upload is too large for the server: {detail}"
    if status == 409:
        return f"the server already holds this: {detail}"
    if status == 503:
        return f"the server's model is not available: {detail}"
    if status is not None and status >= 500:
        return "the server failed with an internal error: see the server log (the details name the request)"
    return f"the server could not use the input: {detail}"


def _unavailable_text(exc: BaseException, url: str) -> str:
    msg = str(exc)
    where = url or "the given address"
    if "0.0.0.0" in msg or "0.0.0.0" in where:
        port = re.search(r":(\d+)", where.split("0.0.0.0", 1)[-1])
        hint = f"http://127.0.0.1:{port.group(1)}" if port else "http://127.0.0.1:8000"
        return (f"0.0.0.0 is the address a server listens on, not one to connect to: use {hint} on the same "
                "computer, or the server's host name")
    if "did not answer within" in msg:
        return f"the server at {where} did not answer in time: it may be busy, try again in a moment"
    if "exited" in msg:
        return f"the server process stopped before it answered: see the server log ({msg})"
    return (f"no OncoLabel server answers at {where}: start it with 'oncolabel serve --studies DIR' "
            "or check the address and port")


def describe(exc: BaseException, *, url: Optional[str] = None) -> UserMessage:
    """One actionable sentence for ``exc`` (and its technical details).

    Args:
        exc: any exception raised by the Lib, the client or a background job.
        url: the server URL in use (named in connection messages).
    """
    names = _class_names(exc)
    url = url or ""
    if isinstance(exc, ModuleError):
        text = str(exc)
    elif "JobCancelled" in names:
        text = "cancelled"
    elif "ServerUnavailableError" in names:
        text = _unavailable_text(exc, url)
    elif "AuthError" in names:
        status = getattr(exc, "status", None) or 401
        text = f"the server refused the credentials (HTTP {status}): log in again or paste a valid token"
    elif "ServerRequestError" in names:
        text = _server_request_text(exc, url)
    elif "TrainingFailedError" in names:
        text = ("training was cancelled" if "cancelled" in str(exc)
                else f"the training round failed ({clean_detail(exc)}): see the details and the server log")
    elif isinstance(exc, (FileNotFoundError, PermissionError)):
        text = f"a file could not be used: {exc}"
    else:
        text = f"unexpected error ({type(exc).__name__}): see the details and report it"
    detail_parts = [f"{type(exc).__name__}: {exc}"]
    for attr in ("status", "detail"):
        value = getattr(exc, attr, None)
        if value not in (None, ""):
            detail_parts.append(f"{attr}: {value}")
    if exc.__traceback__ is not None:
        detail_parts.append("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    return UserMessage(sentence(text), "\n".join(detail_parts))
