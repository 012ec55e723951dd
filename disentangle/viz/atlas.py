"""The neuron atlas as a static site that opens from ``file://`` with no network and no server:
``index.html`` (every unit in one table that sorts and filters; the script and styles inline),
``units/<block>_<unit>.html`` (one page per unit), ``features/<block>/unit_<u>_feature.png`` (the
feature visualizations), ``top/<block>_<unit>.png`` (top-activating images with the activation map
and the dissection mask) and ``units.json`` (the table's data)."""
from __future__ import annotations

import html
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps

from ..io import artifacts, layout
from .plots import png_bytes

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#1b1b1b}
h1{font-size:1.35em;margin:0 0 .3em}h2{font-size:1.1em;margin:1.4em 0 .4em}
.meta{color:#555;margin-bottom:1em}
table{border-collapse:collapse}th,td{padding:3px 7px;border-bottom:1px solid #e3e3e3;text-align:left;
vertical-align:middle}th{background:#f4f4f4;position:sticky;top:0;cursor:pointer;user-select:none;white-space:nowrap}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:hover td{background:#fafaf0}img.thumb{width:28px;height:28px;image-rendering:pixelated;display:block}
img.feature{width:224px;height:224px;image-rendering:pixelated;border:1px solid #ccc}
img.top{max-width:100%;image-rendering:pixelated}.controls{margin:.6em 0 1em}.controls input{width:22em}
.agree{color:#17692b}.disagree{color:#a1261b}.grid{display:flex;gap:2em;flex-wrap:wrap;align-items:flex-start}
nav a{margin-right:1em}
"""

SCRIPT = """
(function () {
  var table = document.getElementById('units');
  var body = table.tBodies[0];
  var query = document.getElementById('filter');
  var block = document.getElementById('block');
  var shown = document.getElementById('shown');
  function value(row, i) {
    var cell = row.cells[i];
    var v = cell.getAttribute('data-v');
    return v === null ? cell.textContent : v;
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = value(a, i), y = value(b, i), nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : (isNaN(nx) === isNaN(ny) ? x.localeCompare(y) : (isNaN(nx) ? 1 : -1));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  function filter() {
    var q = query.value.toLowerCase(), b = block.value, n = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var ok = (!b || r.getAttribute('data-block') === b) && r.textContent.toLowerCase().indexOf(q) >= 0;
      r.style.display = ok ? '' : 'none';
      n += ok ? 1 : 0;
    });
    shown.textContent = n;
  }
  query.addEventListener('input', filter);
  block.addEventListener('change', filter);
  filter();
})();
"""

def _page(title: str, body: str, script: str = "") -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n"
            + (f"<script>{script}</script>" if script else "") + "</body></html>\n")


def _cell(column: str, value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return f"<td>{'yes' if value else ''}</td>"
    if isinstance(value, (int, np.integer)):
        return f'<td class="n" data-v="{int(value)}">{int(value)}</td>'
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return '<td class="n" data-v="">n/a</td>'
        return f'<td class="n" data-v="{value:.6g}">{value:.3f}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def unit_page_name(block: str, unit: int) -> str:
    return f"{block}_{unit:04d}.html"


def top_strip(images: np.ndarray, maps: np.ndarray, threshold: float | None, scale: int = 2) -> np.ndarray:
    """``images (T, S, S, 3)`` uint8 and their activation maps ``maps (T, h, w)`` -> one ``(S·scale,
    T·(S·scale + 4), 3)`` strip: each image under its map (inferno, half transparent, scaled by the
    strip's largest value) and the dissection mask's outline (where the map exceeds ``threshold``)."""
    s = images.shape[1] * scale
    up = torch.nn.functional.interpolate(torch.from_numpy(maps).float()[:, None], size=images.shape[1:3],
                                         mode="bilinear", align_corners=False)[:, 0].numpy()
    peak = max(float(up.max()), 1e-12)
    tiles = []
    for img, m in zip(images, up):
        heat = colormaps["inferno"](np.clip(m / peak, 0, 1))[..., :3]
        tile = 0.55 * img / 255 + 0.45 * heat
        if threshold is not None and math.isfinite(threshold):
            mask = m > threshold
            edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
            tile[edge] = (0.1, 0.95, 1.0)
        tile = np.kron((tile * 255).round().astype(np.uint8), np.ones((scale, scale, 1), dtype=np.uint8))
        tiles += [tile, np.full((s, 4, 3), 255, dtype=np.uint8)]
    return np.concatenate(tiles[:-1], 1)


def histogram_svg(values: np.ndarray, width: int = 360, height: int = 130, bins: int = 30) -> str:
    """An inline SVG histogram of ``values`` with the mean marked."""
    counts, edges = np.histogram(values, bins=bins)
    top = max(int(counts.max()), 1)
    pad, w, h = 24, width - 30, height - 36
    bars = []
    for i, c in enumerate(counts):
        bh = h * c / top
        bars.append(f'<rect x="{pad + i * w / bins:.1f}" y="{8 + h - bh:.1f}" width="{w / bins - 1:.1f}" '
                    f'height="{bh:.1f}" fill="#4c72b0"/>')
    lo, hi = float(edges[0]), float(edges[-1])
    mx = pad + (float(values.mean()) - lo) / max(hi - lo, 1e-12) * w
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="activation histogram">{"".join(bars)}'
            f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="4" y2="{8 + h}" stroke="#c44e52" stroke-width="1.5"/>'
            f'<text x="{pad}" y="{height - 12}" font-size="11">{lo:.2f}</text>'
            f'<text x="{pad + w}" y="{height - 12}" font-size="11" text-anchor="end">{hi:.2f}</text>'
            f'<text x="{mx:.1f}" y="{height - 2}" font-size="11" text-anchor="middle" fill="#c44e52">mean '
            f'{float(values.mean()):.2f}</text><text x="2" y="14" font-size="11">{top}</text></svg>')


def write_site(atlas, out: Path, related: int = 5) -> Path:
    """Write the site of a ``pipeline.atlas.Atlas`` into ``out``; returns its index.html."""
    from ..pipeline.atlas import agreement, verdicts
    offsets = np.cumsum([0] + [len(b.units) for b in atlas.blocks])
    names = [(b.name, int(u)) for b in atlas.blocks for u in b.units["unit"]]
    for blk in atlas.blocks:
        if blk.feature_dir is not None:
            target = out / "features" / blk.name
            target.mkdir(parents=True, exist_ok=True)
            for u in blk.units["unit"]:
                src = blk.feature_dir / layout.feature_image(int(u))
                if src.is_file():
                    shutil.copyfile(src, target / layout.feature_image(int(u)))
    # Blocks can lack a stage another block has: one table over the union of their columns.
    columns = list(dict.fromkeys(c for b in atlas.blocks for c in b.units.columns))
    rows = []
    for bi, blk in enumerate(atlas.blocks):
        table = blk.units.reindex(columns=columns)
        for i, (_, r) in enumerate(table.iterrows()):
            u = int(r["unit"])
            page = f"units/{unit_page_name(blk.name, u)}"
            feature = f"features/{blk.name}/{layout.feature_image(u)}"
            thumb = f'<td><img class="thumb" src="{feature}" alt="feature visualization"></td>' \
                if blk.feature_dir is not None else "<td></td>"
            cells = "".join(_cell(c, r[c]) if c != "unit" else
                            f'<td class="n" data-v="{u}"><a href="{page}">{u}</a></td>' for c in table.columns)
            rows.append(f'<tr data-block="{html.escape(blk.name)}">{thumb}{cells}</tr>')
            found = verdicts(r)
            _unit_page(atlas, bi, blk, i, r, out, offsets, names, related, found, agreement(found)[0])
    head = "<th>feature</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    options = "".join(f'<option value="{html.escape(b.name)}">{html.escape(b.name)}</option>' for b in atlas.blocks)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in atlas.notes)
    sources = "".join(f"<li>{html.escape(k)}: <code>{html.escape(v)}</code></li>"
                      for b in atlas.blocks[:1] for k, v in b.sources.items())
    body = (f"<h1>Neuron atlas: {html.escape(atlas.model)}</h1>"
            f'<div class="meta">{len(names)} units of {", ".join(b.name for b in atlas.blocks)} · weights '
            f'{html.escape(str(atlas.weights.get("sha256") or "random")[:12])} · probe images: '
            f'{html.escape(atlas.probe)} ({len(atlas.images)}) · agreement: verdicts sharing a word, of the pairs '
            f'of verdicts a unit has</div>'
            + (f"<ul>{notes}</ul>" if notes else "") + (f"<details><summary>sources</summary><ul>{sources}</ul>"
                                                         f"</details>" if sources else "")
            + '<div class="controls"><input id="filter" type="search" placeholder="filter: any text in a row" '
              f'aria-label="filter"> <select id="block" aria-label="block"><option value="">all blocks</option>'
              f'{options}</select> <span id="shown"></span> units shown; click a column to sort</div>'
            f'<table id="units"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')
    index = out / "index.html"
    artifacts.write_bytes(index, _page(f"Neuron atlas: {atlas.model}", body, SCRIPT).encode())
    return index


def _unit_page(atlas, bi: int, blk, i: int, row, out: Path, offsets: np.ndarray, names: list, related: int,
               found: dict[str, str], pairs: list) -> None:
    u = int(row["unit"])
    top_name = f"{blk.name}_{u:04d}.png"
    threshold = None if blk.thresholds is None else float(blk.thresholds[i])
    strip = top_strip(atlas.images[blk.top[i]], blk.maps[i], threshold)
    artifacts.write_bytes(out / "top" / top_name, png_bytes(strip))
    scores = {"dissection": f"IoU {row['iou']:.3f}" + (" (detector)" if row.get("detector") else "")
              if "iou" in row and isinstance(row["iou"], float) and math.isfinite(row["iou"]) else "",
              "linear explanation": blk.explanations.get(u, "")
              + (f" · sim correlation {row['sim correlation']:.3f}" if "sim correlation" in row
                 and math.isfinite(row["sim correlation"]) else ""),
              "InterpScore concept": " · ".join(f"{a} {row[a]:.2f}" for a in ("S", "C", "R", "H", "InterpScore")
                                                if a in row and math.isfinite(row[a]))}
    verdict_rows = "".join(f"<tr><td>{html.escape(m)}</td><td><b>{html.escape(v)}</b></td>"
                           f"<td>{html.escape(scores.get(m, ''))}</td></tr>" for m, v in found.items())
    pair_rows = "".join(f'<li class="{"agree" if ok else "disagree"}">{html.escape(a)} and {html.escape(b)}: '
                        f'{"agree" if ok else "disagree"}</li>' for a, b, ok in pairs)
    me = offsets[bi] + i
    order = [j for j in np.argsort(-atlas.correlation[me], kind="stable") if j != me][:related]
    near = "".join(f'<li><a href="{unit_page_name(*names[j])}">{html.escape(names[j][0])} unit {names[j][1]}</a> '
                   f"r = {atlas.correlation[me, j]:.2f}</li>" for j in order)
    stats = "".join(f"<tr><td>{html.escape(c)}</td>{_cell(c, row[c])}</tr>" for c in row.index
                    if c not in ("block", "unit", *found.keys(), "linear explanation", "dissection",
                                 "clip-dissect", "interpscore concept"))
    prev_link = f'<a href="{unit_page_name(*names[me - 1])}">previous</a>' if me > 0 else ""
    next_link = f'<a href="{unit_page_name(*names[me + 1])}">next</a>' if me + 1 < len(names) else ""
    feature = (f'<img class="feature" src="../features/{blk.name}/{layout.feature_image(u)}" '
               f'alt="feature visualization of {blk.name} unit {u}">' if blk.feature_dir is not None
               else "<p>no feature visualization</p>")
    body = (f'<nav><a href="../index.html">index</a>{prev_link}{next_link}</nav>'
            f"<h1>{html.escape(atlas.model)} · {html.escape(blk.name)} · unit {u}</h1>"
            f'<div class="grid"><div><h2>Feature visualization</h2>{feature}</div>'
            f"<div><h2>Verdicts</h2><table><tr><th>method</th><th>label</th><th>evidence</th></tr>{verdict_rows}"
            f"</table><ul>{pair_rows}</ul></div>"
            f"<div><h2>Activation histogram</h2>{histogram_svg(blk.mean[:, i])}<p>spatial-mean activation over "
            f"{len(blk.mean)} probe images</p></div></div>"
            f"<h2>Top-activating images</h2><p>by the unit's largest value; its map over each image, the "
            f"dissection mask outlined in cyan</p><img class=\"top\" src=\"../top/{top_name}\" "
            f'alt="top-activating images of {blk.name} unit {u}">'
            f'<div class="grid"><div><h2>Most correlated units</h2><ul>{near}</ul></div>'
            f"<div><h2>Statistics</h2><table>{stats}</table></div></div>")
    artifacts.write_bytes(out / "units" / unit_page_name(blk.name, u),
                          _page(f"{atlas.model} {blk.name} unit {u}", body).encode())
