"""One figure style for every valuedyn figure, and the one place figures are written.

Figures are deterministic: fixed size and dpi, no timestamps in the PNG or PDF
metadata (the command line renders with Agg; an import never switches the
backend, so a notebook shows figures inline). :func:`render_figure` turns a Figure into PNG and PDF bytes
(nothing touches the disk), :func:`write_rendered` writes them atomically, so a
command can render every figure first and write only when all of them succeeded.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Iterator

import matplotlib
import matplotlib.pyplot as plt

from valuedyn._io import atomic_path

DPI = 150
#: Single-column and double-column widths in inches (a typical paper).
WIDTH_SINGLE = 3.4
WIDTH_DOUBLE = 7.0

#: Colour-blind safe (Okabe-Ito); models get colours in sorted-name order.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
OBSERVED_COLOR = "#333333"

RC_PARAMS = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "font.family": "DejaVu Sans",  # shipped with matplotlib: same glyphs on every machine
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "lines.linewidth": 1.2,
    "legend.frameon": False,
    "pdf.fonttype": 42,  # embed TrueType: editable text in the PDF
    "svg.hashsalt": "valuedyn",
    "path.simplify": False,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Apply the valuedyn style inside a ``with`` block (restores the caller's rcParams)."""
    with matplotlib.rc_context(RC_PARAMS):
        yield


def model_colors(model_names) -> dict[str, str]:
    """Stable colour per model name: sorted names take the palette in order."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(model_names)))}


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = WIDTH_DOUBLE, row_height: float = 2.0, **kwargs):
    """``(fig, axes)`` with the valuedyn size conventions; axes is always a 2-d array."""
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width, max(1.2, row_height * nrows)), squeeze=False, **kwargs
    )
    return fig, axes


_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None}


def render_figure(fig) -> dict[str, bytes]:
    """``{"png": bytes, "pdf": bytes}`` of ``fig``, then close it. Same figure -> same bytes."""
    out = {}
    with style():
        for fmt, metadata in (("png", _PNG_METADATA), ("pdf", _PDF_METADATA)):
            buffer = io.BytesIO()
            fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata, bbox_inches=None)
            out[fmt] = buffer.getvalue()
    plt.close(fig)
    return out


def write_rendered(rendered: dict[str, bytes], stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` atomically; returns the paths written."""
    stem = Path(stem)
    written = []
    for fmt, payload in rendered.items():
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            tmp.write_bytes(payload)
        written.append(path)
    return written
