"""The cohort page (``cohort.html``): one self-contained HTML file, readable offline and mailable.

Nothing is fetched: the QC thumbnails are PNG data URIs (each case's ``qc.png`` reduced to
``THUMBNAIL_PX``), the plots inline SVG, the sorting a few lines of inline JavaScript (click a
column heading; ``cohort.html#sort=KEY`` or ``#sort=-KEY`` opens it sorted). Rows come in the
cohort's order: unfinished and to-check cases first. One plot per bone: its volume against age
when the cohort's names give ages, else a histogram; a bone judged unreliable is drawn hollow and
red, never mixed silently with the others.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
from pathlib import Path

from .. import __version__
from ..catalog import get_bone
from .cohort import STATUS_ORDER, CohortCase, cohort_bones, cohort_measurements, status_counts

THUMBNAIL_PX = 220
GENERATOR = "pbseg report"  # in the page's generator meta tag: marks a page this command may replace
_PLOT_W, _PLOT_H, _MARGIN = 270, 180, 38
_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.2em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} .meta{color:#666;margin-bottom:1em}
.plots{display:flex;flex-wrap:wrap;gap:14px;margin-bottom:1.4em}
figure{margin:0;border:1px solid #ddd;padding:6px;background:#fafafa} figcaption{font-weight:600}
table{border-collapse:collapse} th,td{border:1px solid #ddd;padding:4px 6px;vertical-align:top}
th{background:#eee;cursor:pointer;user-select:none;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right} tr.unfinished{background:#fde2e2} tr.check{background:#fff4d6}
.status{font-weight:700} .unreliable{color:#b00020} img{display:block}
td.warnings{min-width:30em;font-size:12px} ul{margin:0;padding-left:1.1em}
"""
_SCRIPT = """
const table = document.getElementById('cases');
function sortBy(key, descending) {
  const headers = Array.from(table.tHead.rows[0].cells);
  const index = headers.findIndex(h => h.dataset.key === key);
  if (index < 0) return;
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = a.cells[index].dataset.sort, y = b.cells[index].dataset.sort;
    if (x === '' || y === '') return (x === '') - (y === '');  // empty cells last, either way
    const nx = Number(x), ny = Number(y);
    const order = !isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y);
    return descending ? -order : order;
  });
  rows.forEach(row => body.appendChild(row));
  headers.forEach(h => h.removeAttribute('aria-sort'));
  headers[index].setAttribute('aria-sort', descending ? 'descending' : 'ascending');
  document.body.dataset.sorted = (descending ? '-' : '') + key;
}
Array.from(table.tHead.rows[0].cells).forEach(h => h.addEventListener('click', () =>
  sortBy(h.dataset.key, h.getAttribute('aria-sort') === 'ascending')));
const wanted = /^#sort=(-?)(.+)$/.exec(location.hash);
if (wanted) sortBy(decodeURIComponent(wanted[2]), wanted[1] === '-');
document.body.dataset.ready = 'true';
"""


def cohort_html(cases: list[CohortCase], title: str) -> str:
    """The page for ``cases`` (in ``gather_cohort``'s order)."""
    bones, keys = cohort_bones(cases), cohort_measurements(cases)
    counts = status_counts(cases)
    with_age = any(case.age_years is not None for case in cases)
    plots = "".join(_bone_plot(bone, cases, with_age) for bone in bones)
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    headings = [
        ("qc", "QC"), ("case", "Case"), ("status", "Status"), ("joint", "Joint"), ("confidence", "Joint conf."),
        ("age", "Age (y)"), ("warnings", "Warnings"), ("unreliable", "Unreliable bones"),
        *((f"{bone}_ml", f"{get_bone(bone).display_name} (ml)") for bone in bones),
        *((f"{bone}_quality", f"{get_bone(bone).display_name} quality") for bone in bones),
        *((key, _measurement_name(cases, key)) for key in keys),
        ("input", "Input"),
    ]  # fmt: skip
    head = "".join(f'<th data-key="{key}">{html.escape(label)}</th>' for key, label in headings)
    rows = "".join(_row(case, bones, keys) for case in cases)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<div class="meta">{len(cases)} case folders: {counts}. Written {created} by pbseg {__version__}. '
        "Volumes are voxel volumes; hollow red points: bones judged unreliable.</div>"
        f'<div class="plots">{plots}</div>'
        f'<table id="cases"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _row(case: CohortCase, bones: list[str], keys: list[str]) -> str:
    qc = case.qc_file
    thumbnail = (
        f'<a href="{html.escape(case.name)}/{qc.name}"><img alt="QC of {html.escape(case.name)}" '
        f'src="{_thumbnail(qc)}"></a>'
        if qc
        else ""
    )
    warnings = case.warnings or ([case.problem] if case.problem else [])
    cells = [
        _cell(thumbnail, ""),
        _cell(html.escape(case.name), case.name),
        _cell(f'<span class="status">{case.status}</span>', _status_rank(case)),
        _cell(html.escape(case.joint), case.joint),
        _number_cell(case.joint_confidence, 2),
        _number_cell(case.age_years, 1),
        _cell(
            "<ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>" if warnings else "",
            len(warnings),
            "warnings",
        ),
        _cell(f'<span class="unreliable">{html.escape(", ".join(case.unreliable))}</span>', len(case.unreliable)),
    ]
    for bone in bones:
        fields = case.bones.get(bone, {})
        volume = fields.get("voxel_volume_mm3") if fields.get("present") else None
        cells.append(_number_cell(None if volume is None else volume / 1000.0, 2, fields.get("reliable") is False))
    for bone in bones:
        fields = case.bones.get(bone, {})
        cells.append(_number_cell(fields.get("quality"), 2, fields.get("reliable") is False))
    for key in keys:
        measurement = case.measurements.get(key, {})
        value = measurement.get("value")
        cells.append(_cell(html.escape(str(measurement.get("text", ""))), "" if value is None else f"{value:.6g}"))
    cells.append(_cell(html.escape(case.input), case.input))
    return f'<tr class="{case.status}">{"".join(cells)}</tr>'


def _measurement_name(cases: list[CohortCase], key: str) -> str:
    """A measurement's column heading: its name as the first case that has it reports it."""
    return next(str(case.measurements[key].get("name") or key) for case in cases if key in case.measurements)


def _status_rank(case: CohortCase) -> str:
    """Sorting by status gives the page's own order: status, then most unreliable bones."""
    return f"{STATUS_ORDER.index(case.status) * 100 + 99 - min(len(case.unreliable), 99)}"


def _cell(content: str, sort: object, kind: str = "") -> str:
    style = f' class="{kind}"' if kind else ""
    return f'<td{style} data-sort="{html.escape(str(sort))}">{content}</td>'


def _number_cell(value: float | None, digits: int, unreliable: bool = False) -> str:
    if value is None:
        return '<td class="num" data-sort=""></td>'
    style = ' class="num unreliable" title="unreliable"' if unreliable else ' class="num"'
    return f'<td{style} data-sort="{value:.6g}">{value:.{digits}f}</td>'


def _thumbnail(path: Path) -> str:
    """``path`` (a PNG) reduced to at most ``THUMBNAIL_PX`` pixels a side, as a data URI."""
    from PIL import Image

    with Image.open(path) as image:
        image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _bone_plot(bone: str, cases: list[CohortCase], with_age: bool) -> str:
    """One bone's figure: volume (ml) against age, or a histogram of the volumes."""
    points = [
        (case.age_years, case.bones[bone]["voxel_volume_mm3"] / 1000.0, case.bones[bone].get("reliable") is False)
        for case in cases
        if case.status != "unfinished" and case.bones.get(bone, {}).get("present")
    ]
    name = get_bone(bone).display_name
    if with_age:
        dated = [(age, volume, bad) for age, volume, bad in points if age is not None]
        svg, caption = _scatter(dated), f"{name}: volume vs age, {len(dated)} cases"
    else:
        svg, caption = _histogram(points), f"{name}: volume, {len(points)} cases"
    return f"<figure><figcaption>{html.escape(caption)}</figcaption>{svg}</figure>"


def _svg(body: str, x_label: str, y_label: str, x_range: tuple[float, float], y_range: tuple[float, float]) -> str:
    """An SVG plot frame with ticks on both axes around ``body`` (drawn in plot coordinates)."""
    axes = [
        f'<line x1="{_MARGIN}" y1="{_PLOT_H - _MARGIN}" x2="{_PLOT_W - 8}" y2="{_PLOT_H - _MARGIN}" stroke="#444"/>',
        f'<line x1="{_MARGIN}" y1="8" x2="{_MARGIN}" y2="{_PLOT_H - _MARGIN}" stroke="#444"/>',
    ]
    for value in _ticks(*x_range):
        x = _x(value, x_range)
        axes.append(f'<text x="{x:.1f}" y="{_PLOT_H - _MARGIN + 13}" text-anchor="middle">{value:g}</text>')
    for value in _ticks(*y_range):
        y = _y(value, y_range)
        axes.append(f'<text x="{_MARGIN - 4}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>')
    axes.append(f'<text x="{(_PLOT_W + _MARGIN) / 2}" y="{_PLOT_H - 6}" text-anchor="middle">{x_label}</text>')
    axes.append(
        f'<text x="10" y="{_PLOT_H / 2}" transform="rotate(-90 10 {_PLOT_H / 2})" text-anchor="middle">{y_label}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_PLOT_W}" height="{_PLOT_H}" font-size="10" '
        f'role="img">{"".join(axes)}{body}</svg>'
    )


def _scatter(points: list[tuple[float, float, bool]]) -> str:
    if not points:
        return "<p>no case names an age</p>"
    x_range = _padded([age for age, _, _ in points])
    y_range = _padded([volume for _, volume, _ in points], floor=0.0)
    dots = "".join(
        f'<circle cx="{_x(age, x_range):.1f}" cy="{_y(volume, y_range):.1f}" r="3.5" '
        + ('fill="none" stroke="#b00020" stroke-width="1.5"' if bad else 'fill="#2a6fb0"')
        + f"><title>{age:g} y: {volume:.2f} ml{' (unreliable)' if bad else ''}</title></circle>"
        for age, volume, bad in points
    )
    return _svg(dots, "age (years)", "volume (ml)", x_range, y_range)


def _histogram(points: list[tuple[float | None, float, bool]]) -> str:
    if not points:
        return "<p>no case has this bone</p>"
    volumes = [volume for _, volume, _ in points]
    x_range = _padded(volumes, floor=0.0)
    count = max(3, min(12, math.ceil(math.sqrt(len(volumes)))))
    width = (x_range[1] - x_range[0]) / count
    bins = [[0, 0] for _ in range(count)]  # reliable, unreliable
    for _, volume, bad in points:
        bins[min(int((volume - x_range[0]) / width), count - 1)][int(bad)] += 1
    y_range = (0.0, float(max(sum(b) for b in bins)))
    bars = []
    for index, (good, bad) in enumerate(bins):
        left, right = _x(x_range[0] + index * width, x_range), _x(x_range[0] + (index + 1) * width, x_range)
        for lower, upper, colour in ((0, good, "#2a6fb0"), (good, good + bad, "#b00020")):
            if upper > lower:
                top, bottom = _y(upper, y_range), _y(lower, y_range)
                bars.append(
                    f'<rect x="{left + 1:.1f}" y="{top:.1f}" width="{right - left - 2:.1f}" '
                    f'height="{bottom - top:.1f}" fill="{colour}"/>'
                )
    return _svg("".join(bars), "volume (ml)", "cases", x_range, y_range)


def _padded(values: list[float], floor: float | None = None) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = 0.08 * (high - low) or max(abs(high) * 0.1, 1.0)
    low = low - pad if floor is None else max(floor, low - pad)
    return low, high + pad


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values spanning [low, high] (about ``count`` of them)."""
    raw = (high - low) / count
    step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step) + 1)]


def _x(value: float, span: tuple[float, float]) -> float:
    return _MARGIN + (value - span[0]) / (span[1] - span[0]) * (_PLOT_W - 8 - _MARGIN)


def _y(value: float, span: tuple[float, float]) -> float:
    return _PLOT_H - _MARGIN - (value - span[0]) / (span[1] - span[0] or 1.0) * (_PLOT_H - _MARGIN - 8)
