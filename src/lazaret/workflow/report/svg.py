"""Hand-written inline SVG charts: no plotting dependency, no fonts or scripts fetched, text escaped.

Why not matplotlib: it is not a dependency, and its SVG output embeds glyph paths that bloat the page.
These charts are plain <rect>/<text> elements sized for a ~640px column.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

from lazaret.workflow.report.safetext import h

COLORS = ("#3465a4", "#cc0000", "#4e9a06", "#c4a000", "#75507b", "#ce5c00")


def _fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v == int(v):
        return str(int(v))
    return f"{v:.2g}"


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Tuple[str, Sequence[float]]],
              log_y: bool = False, width: int = 600, height: int = 240, xlabel: str = "",
              ylabel: str = "count") -> str:
    """Vertical (grouped) bars: one group per label, one bar per series."""
    n = len(labels)
    left, right, top, bottom = 52, 10, 28, 58
    pw, ph = width - left - right, height - top - bottom
    vmax = max([max(vals) if len(vals) else 0 for _, vals in series] + [0])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}"><title>{h(title)}</title>',
             f'<text x="{left}" y="16" class="ct">{h(title)}</text>']
    if n == 0 or vmax <= 0:
        parts.append(f'<text x="{left + 10}" y="{top + ph / 2:.0f}" class="cl">no data</text></svg>')
        return "".join(parts)

    def y_of(v: float) -> float:
        if v <= 0:
            return 0.0
        if log_y:
            return ph * math.log10(1 + v) / math.log10(1 + vmax)
        return ph * v / vmax

    ticks = ([10 ** k for k in range(0, int(math.log10(vmax)) + 1)] if log_y
             else [vmax * f for f in (0.25, 0.5, 0.75, 1.0)])
    for t in ticks:
        y = top + ph - y_of(t)
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" class="cl" text-anchor="end">{_fmt(t)}</text>')
    gw = pw / n
    k = len(series)
    bw = max(1.0, (gw * 0.8) / k)
    for i, lab in enumerate(labels):
        for j, (name, vals) in enumerate(series):
            v = vals[i] if i < len(vals) else 0
            bh = y_of(v)
            x = left + i * gw + gw * 0.1 + j * bw
            parts.append(f'<rect x="{x:.1f}" y="{top + ph - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                         f'fill="{COLORS[j % len(COLORS)]}"><title>{h(name)} {h(lab)}: {_fmt(v)}</title></rect>')
        if n <= 24 or i % max(1, n // 12) == 0:
            cx = left + i * gw + gw / 2
            parts.append(f'<text x="{cx:.1f}" y="{top + ph + 12}" class="cl" text-anchor="end" '
                         f'transform="rotate(-35 {cx:.1f} {top + ph + 12})">{h(lab, 24)}</text>')
    parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" class="axis"/>')
    if xlabel:
        parts.append(f'<text x="{left + pw / 2:.0f}" y="{height - 4}" class="cl" text-anchor="middle">{h(xlabel)}</text>')
    parts.append(f'<text x="12" y="{top + ph / 2:.0f}" class="cl" transform="rotate(-90 12 {top + ph / 2:.0f})" '
                 f'text-anchor="middle">{h(ylabel)}{" (log)" if log_y else ""}</text>')
    if k > 1:
        for j, (name, _) in enumerate(series):
            lx = left + pw - 150
            ly = top + 4 + j * 14
            parts.append(f'<rect x="{lx}" y="{ly}" width="10" height="10" fill="{COLORS[j % len(COLORS)]}"/>'
                         f'<text x="{lx + 14}" y="{ly + 9}" class="cl">{h(name, 24)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(title: str, items: Sequence[Tuple[str, float]], width: int = 600, max_items: int = 20) -> str:
    """Horizontal bars, largest first: entity counts and the like, where labels are long."""
    items = sorted(items, key=lambda kv: (-kv[1], kv[0]))[:max_items]
    row = 18
    left, top = 170, 28
    height = top + row * max(1, len(items)) + 10
    pw = width - left - 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}"><title>{h(title)}</title>',
             f'<text x="10" y="16" class="ct">{h(title)}</text>']
    if not items:
        parts.append(f'<text x="{left}" y="{top + 12}" class="cl">no data</text></svg>')
        return "".join(parts)
    vmax = max(v for _, v in items) or 1
    for i, (lab, v) in enumerate(items):
        y = top + i * row
        w = pw * v / vmax
        parts.append(f'<text x="{left - 6}" y="{y + 12}" class="cl" text-anchor="end">{h(lab, 28)}</text>'
                     f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="{row - 5}" fill="{COLORS[0]}">'
                     f'<title>{h(lab)}: {_fmt(v)}</title></rect>'
                     f'<text x="{left + w + 4:.1f}" y="{y + 12}" class="cl">{_fmt(v)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_bins(values: Sequence[float], bins: int = 20, lo: Optional[float] = None,
                   hi: Optional[float] = None) -> Tuple[List[str], List[int]]:
    """Equal-width bins over [lo, hi] (default: [0, 1] when all values fit, else the data range)."""
    import numpy as np

    arr = np.asarray(values, dtype="float64")
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return [], []
    if lo is None:
        lo = 0.0 if arr.min() >= 0 else float(arr.min())
    if hi is None:
        hi = 1.0 if arr.max() <= 1 else float(arr.max())
    if hi <= lo:
        hi = lo + 1
    counts, edges = np.histogram(arr, bins=bins, range=(lo, hi))
    labels = [f"{edges[i]:.2g}-{edges[i + 1]:.2g}" for i in range(len(counts))]
    return labels, [int(c) for c in counts]


def log2_bins(sizes: Sequence[int]) -> List[str]:
    """Labels 2, 3-4, 5-8, ... covering the largest size: cluster sizes span orders of magnitude."""
    mx = max(max(sizes), 2) if sizes else 2  # a one-record cluster (a signature hit) still gets a bin
    labels, lo, hi = [], 2, 2
    while lo <= mx:
        labels.append(str(lo) if lo == hi else f"{lo}-{hi}")
        lo, hi = hi + 1, hi * 2
    return labels


def log2_bin_index(size: int) -> int:
    return 0 if size <= 2 else int(math.ceil(math.log2(size))) - 1
