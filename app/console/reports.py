"""Reports: the console's charts of ``GET /api/v1/reports/summary`` (SPEC §12), drawn on the
server as SVG (each with its numbers in a table beside it), so the page needs no JavaScript."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.responses import Response

from app import reports
from app.console.auth import Ctx
from app.console.pages import console_page
from app.console.render import render

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 200, 44, 24, 12
PRESETS = (7, 30, 90)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str  # the SVG <title>: a tooltip and the bar's accessible text


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    unit: str
    bars: list[Bar]
    ticks: list[tuple[float, str]]  # (y, label) of the value axis
    labels: list[tuple[float, str]]  # (x, date) under some bars
    rows: list[tuple[str, str]]  # the table: (date, value)
    empty: bool


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 100000):
        if value <= step:
            return float(step)
    return value


def bar_chart(chart_id: str, title: str, unit: str, days: list[dict[str, Any]], key: str, scale: float = 1.0,
              fixed_max: float | None = None, digits: int = 0) -> Chart:  # fmt: skip
    values = [None if d[key] is None else d[key] / scale for d in days]
    top = fixed_max or _nice_max(max((v for v in values if v is not None), default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(1, len(days))
    bars, rows, labels = [], [], []
    every = max(1, len(days) // 6)
    for i, (day, value) in enumerate(zip(days, values, strict=True)):
        shown = "–" if value is None else f"{value:.{digits}f}"
        rows.append((day["date"], shown))
        x = PAD_LEFT + i * slot
        if i % every == 0:
            labels.append((x + slot / 2, day["date"][5:]))
        if value:
            h = plot_h * min(value, top) / top
            tip = f"{day['date']}: {shown} {unit}"
            bars.append(Bar(x + slot * 0.15, PAD_TOP + plot_h - h, max(1.0, slot * 0.7), h, tip))
    ticks = [(PAD_TOP + plot_h - plot_h * f, f"{top * f:g}") for f in (0, 0.5, 1)]
    return Chart(chart_id, title, unit, bars, ticks, labels, rows, empty=not bars)


def _parse(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@console_page()
async def reports_page(ctx: Ctx) -> Response:
    today = datetime.now(UTC).date()
    end = _parse(ctx.request.query_params.get("to")) or today
    start = _parse(ctx.request.query_params.get("from")) or end - timedelta(days=29)
    problem = None
    if start > end or (end - start).days >= reports.MAX_DAYS:
        problem = f"Choose a start on or before the end, at most {reports.MAX_DAYS} days apart."
        start, end = today - timedelta(days=29), today
    data = await ctx.state.runner.read(reports.summary, ctx.workspace_id, start, end)
    days = data["days"]
    charts = [
        bar_chart("volume", "Conversations per day", "conversations", days, "conversations"),
        bar_chart("first-response", "Median first response", "minutes", days, "median_first_response_seconds", 60,
                  digits=1),
        bar_chart("resolution", "Median time to resolve", "hours", days, "median_resolution_seconds", 3600, digits=1),
        bar_chart("ratings", "Average rating", "of 5", days, "rating_average", fixed_max=5, digits=1),
    ]  # fmt: skip
    return render(
        ctx.request, "reports.html", ctx=ctx, data=data, charts=charts, start=start, end=end, presets=PRESETS,
        today=today, problem=problem, width=WIDTH, height=HEIGHT, pad_left=PAD_LEFT, pad_bottom=PAD_BOTTOM,
        timedelta=timedelta, duration=duration, status=422 if problem else 200,
    )  # fmt: skip


def duration(seconds: float | None) -> str:
    """93 -> "1 min 33 s"; 7260 -> "2 h 1 min"; None -> "–"."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"
