"""Render a :class:`~oncolabel.report.build.Report` as one self-contained HTML page, a PDF, or
separate figure files (PNG / PDF / SVG) with CSV tables for papers.

The HTML page embeds every figure as a base64 PNG and needs no network, script or stylesheet.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from oncolabel.errors import InvalidInputError
from oncolabel.io import atomic_path
from oncolabel.report.build import Report, Section, Table

FORMATS = ("html", "pdf", "png")
FIGURE_FORMATS = ("png", "pdf", "svg")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
.notice{background:#fff3cd;border:1px solid #e0c36c;padding:.6em 1em;border-radius:4px;font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption,.ruo{font-size:.85em;color:#555}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.8em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.note{font-size:.8em;color:#555}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.75em}
"""


def _check_format(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise InvalidInputError(f"{what} format must be one of {allowed}, got {value!r}")
    return value


def fmt(value: Any) -> str:
    """A table cell as text: 4 significant digits for floats, empty for ``None``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.4g}"
    return str(value)


def figure_bytes(fig: Any, fmt_: str = "png", *, dpi: int = 110) -> bytes:
    """Encode a matplotlib Figure (PNG, PDF or SVG)."""
    _check_format(fmt_, FIGURE_FORMATS, "figure")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt_, dpi=dpi, metadata=None if fmt_ != "png" else {"Software": "OncoLabel"})
    return buf.getvalue()


def _table_html(t: Table, notice: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in t.rows)
    inner = (f'<div class="scroll"><table id="table-{html.escape(t.key)}"><thead><tr>{head}</tr></thead>'
             f"<tbody>{body}</tbody></table></div>"
             f'<p class="note">{html.escape(t.note)} <span class="ruo">({html.escape(notice)})</span></p>')
    if t.collapsed:
        return f"<details><summary>{html.escape(t.title)} ({len(t.rows)} rows)</summary>{inner}</details>"
    return f"<h3>{html.escape(t.title)}</h3>{inner}"


def _section_html(s: Section, notice: str) -> str:
    parts = [f'<section id="{html.escape(s.key)}"><h2>{html.escape(s.title)}</h2>']
    if s.figure is not None:
        b64 = base64.b64encode(figure_bytes(s.figure)).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{html.escape(s.title)}">'
                     f"<figcaption>{html.escape(s.caption)} <strong>{html.escape(notice)}.</strong>"
                     "</figcaption></figure>")
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in s.notes]
    parts += [_table_html(t, notice) for t in s.tables]
    parts.append("</section>")
    return "".join(parts)


def render_html(report: Report) -> str:
    """The report as one self-contained HTML page (figures as base64 PNG)."""
    notice = report.notice
    body = "".join(_section_html(s, notice) for s in report.sections)
    prov = html.escape(json.dumps(report.provenance, indent=2, default=str), quote=False)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{html.escape(report.title)}</h1>"
            f'<p class="notice">{html.escape(notice.capitalize())}.</p>{body}'
            f'<section id="provenance"><h2>Provenance</h2><p class="note">Software versions, input file hashes '
            f"and settings that produced this report.</p><pre>{prov}</pre></section></body></html>")


def _write_csv(table: Table, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(table.columns)
        w.writerows([["" if v is None else v for v in row] for row in table.rows])


def render_figures(report: Report, out_dir: str | Path, fmt: str = "png", *, dpi: int = 300) -> list[Path]:
    """Write each figure as its own file (for papers), each table as CSV, and provenance.json.

    Parameters
    ----------
    out_dir : path
        Created if missing.
    fmt : {"png", "pdf", "svg"}
    dpi : int
        Resolution of PNG figures.

    Returns
    -------
    list of Path
        Every file written.
    """
    _check_format(fmt, FIGURE_FORMATS, "figure")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, fig in report.figures().items():
        path = out / f"{key}.{fmt}"
        path.write_bytes(figure_bytes(fig, fmt, dpi=dpi))
        written.append(path)
    for table in report.tables():
        path = out / f"{table.key}.csv"
        _write_csv(table, path)
        written.append(path)
    path = out / "provenance.json"
    path.write_text(json.dumps(report.provenance, indent=2, default=str), encoding="utf-8")
    return written + [path]


def _pdf(report: Report, path: Path) -> None:
    from matplotlib.backends.backend_pdf import PdfPages

    from oncolabel.report.figures import new_figure

    with PdfPages(path, metadata={"Title": report.title, "Subject": report.notice}) as pdf:
        for fig in report.figures().values():
            pdf.savefig(fig)
        page = new_figure(8.27, 11.69)
        text = f"{report.title}\n{report.notice}\n\nProvenance\n" + json.dumps(report.provenance, indent=1, default=str)
        page.text(0.04, 0.97, text, va="top", ha="left", family="monospace", fontsize=5.5, wrap=True)
        pdf.savefig(page)


def write_report(report: Report, out: str | Path, fmt: str = "html") -> list[Path]:
    """Write the report.

    ``html``: one self-contained page at ``out``; ``pdf``: one PDF at ``out``, a page per figure
    and a provenance page; ``png``: a folder ``out`` with one PNG per figure, CSV tables and
    provenance.json (see :func:`render_figures`).

    Returns
    -------
    list of Path
        The files written.
    """
    _check_format(fmt, FORMATS, "report")
    path = Path(out)
    if fmt == "png":
        return render_figures(report, path, "png")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a failure never leaves half a report, nor damages an earlier one
        if fmt == "html":
            tmp.write_text(render_html(report), encoding="utf-8")
        else:
            _pdf(report, tmp)
    return [path]
