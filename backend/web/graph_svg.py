"""Server-side SVG of a DAG: layered left to right, one column per topological generation.

Both the job page (structure) and the run page (structure coloured by task status) draw
with :func:`dag_svg`; the run page redraws it whenever the run changes. Names are escaped
by Jinja's Markup machinery, never concatenated raw.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

NODE_WIDTH = 168
NODE_HEIGHT = 40
COLUMN_GAP = 64
ROW_GAP = 18
MARGIN = 16
MAX_LABEL = 22

# Fill per status (the same palette as app.css); structure-only nodes are white.
STATUS_FILL = {
    "pending": "#cbd5e1",
    "queued": "#98a2b3",
    "running": "#93c5fd",
    "retrying": "#7dd3fc",
    "succeeded": "#86efac",
    "failed": "#fca5a5",
    "timed_out": "#fdba74",
    "upstream_failed": "#fcd34d",
    "skipped": "#ddd6fe",
    "cancelled": "#d1d5db",
}


@dataclass(frozen=True)
class Box:
    x: int
    y: int


def layout(layers: Sequence[Sequence[str]]) -> tuple[dict[str, Box], int, int]:
    """Positions of every node, and the drawing's width and height."""
    positions: dict[str, Box] = {}
    tallest = max((len(layer) for layer in layers), default=0)
    height = MARGIN * 2 + max(tallest, 1) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
    for column, layer in enumerate(layers):
        x = MARGIN + column * (NODE_WIDTH + COLUMN_GAP)
        used = len(layer) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP
        top = (height - used) // 2  # centre each column vertically
        for row, name in enumerate(layer):
            positions[name] = Box(x, top + row * (NODE_HEIGHT + ROW_GAP))
    width = MARGIN * 2 + max(len(layers), 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP
    return positions, width, height


def _label(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "…"


def dag_svg(
    layers: Sequence[Sequence[str]],
    edges: Sequence[tuple[str, str]],
    *,
    statuses: Mapping[str, str] | None = None,
    links: Mapping[str, str] | None = None,
) -> Markup:
    """The DAG as inline SVG; ``statuses`` colours nodes, ``links`` makes them anchors."""
    positions, width, height = layout(layers)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="Task graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" '
        'fill="#94a3b8"/></marker></defs>',
    ]
    for source, target in edges:
        start, end = positions.get(source), positions.get(target)
        if start is None or end is None:
            continue
        x1, y1 = start.x + NODE_WIDTH, start.y + NODE_HEIGHT // 2
        x2, y2 = end.x, end.y + NODE_HEIGHT // 2
        bend = (x2 - x1) // 2
        parts.append(
            f'<path class="edge" d="M {x1} {y1} C {x1 + bend} {y1}, {x2 - bend} {y2}, {x2} {y2}"/>'
        )
    for name, box in positions.items():
        status = (statuses or {}).get(name)
        fill = STATUS_FILL.get(status or "", "#ffffff")
        title = f"{name}: {status}" if status else name
        node = (
            f'<g class="node" data-task="{escape(name)}" data-status="{escape(status or "")}" '
            f'data-testid="dag-node-{escape(name)}">'
            f"<title>{escape(title)}</title>"
            f'<rect x="{box.x}" y="{box.y}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" '
            f'rx="6" fill="{fill}"/>'
            f'<text x="{box.x + 10}" y="{box.y + NODE_HEIGHT // 2 + 4}">'
            f"{escape(_label(name))}</text>"
            "</g>"
        )
        href = (links or {}).get(name)
        parts.append(f'<a href="{escape(href)}">{node}</a>' if href else node)
    parts.append("</svg>")
    # Every interpolated name, status and link above went through escape().
    return Markup("".join(parts))  # noqa: S704
