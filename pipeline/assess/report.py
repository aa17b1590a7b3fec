"""``eulc report``: a self-contained HTML report comparing a class map with a reference map.

The reference is e.g. CLC+ Backbone or CORINE; optional inputs add reference points (accuracy and area with 95 %
CIs, Olofsson et al. 2014), zones (composition and change per polygon) and a previous map
(transition matrix). Writes, atomically:

- ``report.html``: every figure embedded as a PNG data URI, every table, the method notes and
  the model card;
- ``metrics.json``: ``overall_agreement``, ``per_class``, ``confusion`` and the rest;
- one CSV per table; ``disagreement.tif`` (COG: 0 agree, 1 disagree, 255 nodata).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import markdown
import numpy as np
import pandas as pd
import rasterio

from pipeline.assess import report_figures as fig
from pipeline.assess.change import transition_matrix, zone_table
from pipeline.assess.compare import agreement_by, block_agreement, compare, summary
from pipeline.assess.drift import READ_WITH_OOD
from pipeline.assess.refpoints import read_points, sample_accuracy
from pipeline.core.atomic import atomic_path, check_all_replaceable, write_json
from pipeline.core.errors import RasterError, SchemaError
from pipeline.core.legend import Crosswalk, Legend, level1_legend
from pipeline.core.ood_codes import OOD_CODES

CSS = """
body{font-family:'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
header{background:#003399;color:#fff;padding:22px 40px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}main{max-width:1180px;margin:0 auto;padding:10px 40px 40px}
section{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:18px 24px;margin:18px 0}
h2{font-size:18px;margin:0 0 10px;color:#003399;border-bottom:2px solid #ffcc00;padding-bottom:4px}
.kpis{display:flex;gap:14px;flex-wrap:wrap}
.kpi{flex:1;min-width:150px;background:#eef2fa;border-radius:6px;padding:10px 14px}
.kpi b{display:block;font-size:22px;color:#003399}.kpi span{font-size:12px;color:#555}
table{border-collapse:collapse;font-size:12.5px;margin:8px 0}
th,td{border:1px solid #d9dee5;padding:4px 8px;text-align:right}
th{background:#eef2fa}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.note{font-size:12px;color:#555}pre{background:#f7f7f7;padding:10px;font-size:12px;white-space:pre-wrap}
footer{font-size:11px;color:#777;text-align:center;padding:10px}
.row{display:flex;gap:16px;align-items:flex-start;flex-wrap:wrap}.row img{max-width:48%}
.card{font-size:13px}.card h1{font-size:17px}.card h2{font-size:15px;border:0}.card table{font-size:12px}
"""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


HEADERS = {
    "users_accuracy": "user's accuracy",
    "producers_accuracy": "producer's accuracy",
    "f1": "F1",
    "map_pixels": "map pixels",
    "reference_pixels": "reference pixels",
    "x_m": "x (m)",
    "y_m": "y (m)",
    "lon": "lon (°)",
    "lat": "lat (°)",
    "n_pixels": "pixels compared",
    "n_agree": "pixels agreeing",
    "area_ha": "area (ha)",
    "tile": "EEA 10 km cell",
    "mapped_ha": "mapped (ha)",
    "estimated_ha": "estimated (ha)",
    "ci95_ha": "± 95 % CI (ha)",
    "users": "user's accuracy",
    "users_ci95": "± 95 % CI",
    "producers": "producer's accuracy",
    "producers_ci95": "± 95 % CI ",
    "bioregion": "biogeographical region",
}
"""Readable column names of the report's HTML tables (the CSVs keep the field names)."""


def _table(df: pd.DataFrame, floatfmt: str = "{:,.2f}", na_rep: str = "n/a") -> str:
    shown = df.rename(columns=lambda c: HEADERS.get(str(c), str(c).replace("_ha", " (ha)").replace("_", " ")))
    return shown.to_html(index=False, border=0, na_rep=na_rep, float_format=lambda v: floatfmt.format(v))


def _legend_of(map_path: Path) -> Legend:
    with rasterio.open(map_path) as s:
        tags = s.tags()
    if "legend" in tags:
        try:
            return Legend.from_json("level1", json.loads(tags["legend"]))
        except (ValueError, KeyError, TypeError):
            pass
    return level1_legend()


CARD_TAGS = {
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "ul",
    "ol",
    "li",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "code",
    "pre",
    "em",
    "strong",
    "blockquote",
    "hr",
    "br",
    "a",
}
"""The HTML a rendered model card may keep: text structure only; no image, script, style or form."""


def safe_card_html(fragment: str) -> str:
    """Sanitise rendered model-card HTML with ammonia (``nh3``): only :data:`CARD_TAGS`; links (never
    followed by the browser on its own) only to http(s), mailto, anchors and relative paths, so no
    ``javascript:`` or ``data:`` link; no image, frame or other remote resource, so a card from elsewhere cannot run
    script or call out from the report (issue #26).
    """
    import nh3

    return nh3.clean(
        fragment,
        tags=CARD_TAGS,
        attributes={"a": {"href"}, "th": {"align"}, "td": {"align"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )


def _model_card(bundle: Path | None, map_path: Path) -> str:
    if bundle is not None:
        card = bundle / "MODEL_CARD.md"
        if card.is_file():  # rendered (tables, lists, headings): its raw HTML escaped first, then sanitised
            text = html.escape(card.read_text(encoding="utf-8", errors="replace"), quote=False)
            return f"<div class='card'>{safe_card_html(markdown.markdown(text, extensions=['tables']))}</div>"
        meta = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
        return _bundle_summary(bundle, meta)
    with rasterio.open(map_path) as s:
        tags = {k: v for k, v in s.tags().items() if k != "legend"}
    return (
        "<p class='note'>No bundle given; the map's tags name the model:</p>"
        f"<pre>{html.escape(json.dumps(tags, indent=1))}</pre>"
    )


def _dropped(dropped: dict[str, int]) -> str:
    """``none``, or ``code (n px)`` for each code the crosswalk drops on purpose."""
    return ", ".join(f"{c} ({n:,} px)" for c, n in sorted(dropped.items())) or "none"


def _bundle_summary(bundle: Path, meta: dict[str, Any]) -> str:
    """A self-trained bundle (no model card): its metrics and settings as tables."""
    metrics = {k: v for k, v in (meta.get("metrics") or {}).items() if isinstance(v, int | float)}
    arch = {k: v for k, v in (meta.get("architecture") or {}).items() if isinstance(v, int | float | str | bool)}
    feats = meta.get("features") or []
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v:.4g}</td></tr>"
        if isinstance(v, float)
        else f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>"
        for k, v in metrics.items()
    )
    arows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in arch.items())
    spec = meta.get("spec")
    spec_name = str(spec.get("name", "") if isinstance(spec, dict) else spec or "")
    listed = html.escape(", ".join(map(str, feats[:12]))) + (" …" if len(feats) > 12 else "")
    return (
        f"<p>Bundle <code>{html.escape(bundle.name)}</code> (no MODEL_CARD.md): spec "
        f"<code>{html.escape(spec_name)}</code>, {len(feats)} features ({listed}).</p>"
        "<div class='row'><table><tr><th>metric</th><th>value</th></tr>" + rows + "</table>"
        "<table><tr><th>architecture</th><th>value</th></tr>" + arows + "</table></div>"
    )


def ood_beside(map_path: Path) -> Path | None:
    """The OOD layer ``eulc map --ood`` wrote beside a class map (``<tile>_class.tif`` →
    ``<tile>_ood.tif``), or None when there is none.
    """
    name = Path(map_path).name
    if not name.endswith("_class.tif"):
        return None
    cand = Path(map_path).with_name(name.removesuffix("_class.tif") + "_ood.tif")
    return cand if cand.is_file() else None


def _ood_section(comp: Any, ood: Path, legend: Legend) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """The OOD section's HTML, its table (agreement inside / outside the flagged pixels) and metrics."""
    assert comp.confusion_ood is not None and comp.ood_counts is not None and comp.thumb_ood is not None
    counts = comp.ood_counts
    mapped = int(counts.sum())
    rows = []
    for label, cm in (
        ("in distribution (code 0)", comp.confusion - comp.confusion_ood),
        ("flagged (codes 1-3)", comp.confusion_ood),
    ):
        n = int(cm.sum())
        rows.append(
            {
                "pixels": label,
                "n_pixels": n,
                "area_ha": n * comp.pixel_ha,
                "agreement": float(np.trace(cm) / n) if n else None,
            }
        )
    table = pd.DataFrame(rows)
    with rasterio.open(ood) as src:
        tags = src.tags()
    metrics = {
        "file": ood.name,
        "share": float((mapped - counts[0]) / mapped) if mapped else None,
        "counts": {OOD_CODES[c]: int(counts[c]) for c in range(4)},
        "agreement_in_distribution": rows[0]["agreement"],
        "agreement_flagged": rows[1]["agreement"],
        "compared_flagged": rows[1]["n_pixels"],
        "compared_in_distribution": rows[0]["n_pixels"],
        "thresholds": {
            k: tags.get(k, "")
            for k in ("landscape_threshold", "distance_threshold", "k", "quantile", "rare_share", "ood_hash")
        },
    }
    by_code = pd.DataFrame(
        {
            "OOD code": [f"{c}: {OOD_CODES[c]}" for c in range(4)],
            "mapped pixels": [int(counts[c]) for c in range(4)],
            "share (%)": [counts[c] / mapped * 100 if mapped else None for c in range(4)],
        }
    )
    note = (
        f"<p>The OOD layer <code>{html.escape(ood.name)}</code> flags pixels unlike the model's training "
        "data (thresholds at the training rows' "
        f"{html.escape(str(tags.get('quantile', '0.99')))} quantile): <b>1</b> a rare landscape (its nearest of "
        f"K = {html.escape(str(tags.get('k', '16')))} K-Means landscape clusters of the Sentinel-2 band medians "
        "holds under "
        f"{float(tags.get('rare_share', 0.01)) * 100:g} % of the training rows, or it lies beyond the "
        "clusters), <b>2</b> far from the training data in the network's penultimate embedding "
        "(class-conditional Mahalanobis distance, Lee et al. 2018), <b>3</b> both. Expect lower accuracy where "
        "it flags; a low share does not prove the map right (docs/results.md, issue #18).</p>"
    )
    html_ = (
        note
        + _img(fig.ood_quicklook(comp.thumb_map, comp.thumb_ood, comp.extent, legend, comp.crs), "OOD layer")
        + "<div class='row'>"
        + _table(by_code)
        + _table(table, "{:,.3f}")
        + "</div>"
        + "<p class='note'>The share of flagged pixels per EEA 10 km tile and per biogeographical region is in "
        "the tables of the previous section (column <i>ood share</i>).</p>"
    )
    return html_, table, metrics


def drift_summary(drift_csv: Path) -> pd.DataFrame:
    """Per tile of an ``eulc drift --out`` CSV: features compared, shifted (PSI above the run's
    threshold), beyond what one training landscape shows, and the largest PSI.

    Raises:
        SchemaError: the CSV lacks a column of ``eulc drift``'s output (the message names it).
    """
    df = pd.read_csv(drift_csv)
    need = ["tile", "feature", "psi", "flag", "beyond_expected"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise SchemaError(
            f"lacks column(s) {missing}", "Give the per-feature CSV that eulc drift writes", path=drift_csv
        )
    beyond = df["beyond_expected"].astype(str).str.lower().isin(["true", "1"])
    g = df.assign(shifted=df["flag"].eq("shift"), beyond=beyond).groupby("tile", sort=True)
    return pd.DataFrame(
        {
            "features": g.size(),
            "shifted (PSI)": g["shifted"].sum(),
            "beyond one training landscape": g["beyond"].sum(),
            "largest PSI": g["psi"].max(),
        }
    ).reset_index()


REPORT_FILES = (
    "report.html",
    "metrics.json",
    "disagreement.tif",
    "blocks.csv",
    "by_bioregion.csv",
    "by_tile.csv",
    "confusion_ha.csv",
    "per_class.csv",
    "area_estimates.csv",
    "ood.csv",
    "transitions_ha.csv",
    "zones.csv",
    "drift.csv",
)
"""Every file a report may write into its folder."""


def write_report(
    map_path: Path,
    reference: Path,
    crosswalk: str,
    out: Path,
    points: Path | None = None,
    zones: Path | None = None,
    previous: Path | None = None,
    bundle: Path | None = None,
    title: str | None = None,
    on_window: Callable[[int, int], None] | None = None,
    ood: Path | None = None,
    drift: Path | None = None,
) -> dict[str, Any]:
    """Compare ``map_path`` with ``reference`` and write the report files into ``out``.

    Args:
        map_path: class COG (Level-1 ids, nodata 255) from ``eulc map``.
        reference: reference raster in any CRS.
        crosswalk: a shipped crosswalk name (``clcplus_backbone``, ``corine_l3``,
            ``osm_clcplus``, ``eucropmap``, ``eolearn_lulc``, ``elc10``).
        out: output folder.
        points: reference points (FeatureTable or LUCAS LC1 points) for accuracy and area.
        zones: polygons (e.g. NUTS) for per-zone composition (and change with ``previous``).
        previous: an earlier class map of the same legend, for the transition matrix.
        bundle: the model bundle that made the map (its model card goes in the report).
        title: report title.
        on_window: progress of the comparison, called with (windows done, windows in all).
        ood: the map's OOD layer (``eulc map --ood``; :func:`ood_beside` finds it): the report
            shows it beside the map, its share per tile and bioregion, and agreement inside and
            outside the flagged pixels (``metrics["ood"]``, ``ood.csv``).
        drift: the CSV of ``eulc drift --out`` for the map's feature files: its per-tile summary
            goes beside the OOD share, with how to read the two together (``drift.csv``,
            ``metrics["drift"]``).

    Returns:
        The metrics dict also written to ``metrics.json``.

    Raises:
        RasterError, SchemaError, SpecError: bad rasters, crosswalk, points or zones (see
            :func:`pipeline.assess.compare.compare`, :func:`pipeline.assess.refpoints.sample_accuracy`).
    """
    for what, path in (
        ("`map`", map_path),
        ("`reference`", reference),
        ("`points`", points),
        ("`zones`", zones),
        ("`previous`", previous),
        ("`bundle`", bundle),
        ("`ood_layer`", ood),
        ("`drift`", drift),
    ):
        if path is not None and not Path(path).exists():  # every input checked before anything is written
            raise RasterError(f"{what} does not exist", "Check the path", path=path)
    legend = _legend_of(map_path)
    cw = Crosswalk.shipped(crosswalk)
    drift_table_ = drift_summary(drift) if drift is not None else None  # read (and refused) before writing
    out.mkdir(parents=True, exist_ok=True)
    check_all_replaceable(out, REPORT_FILES)  # a refusal before the first file, not after half of them
    comp = compare(map_path, reference, cw, legend, disagreement=out / "disagreement.tif", on_window=on_window, ood=ood)
    metrics = summary(comp, legend)
    blocks = block_agreement(comp)
    names = legend.names
    extent = comp.extent
    tables: dict[str, pd.DataFrame] = {}
    cm_ha = comp.confusion * comp.pixel_ha
    tables["confusion_ha"] = pd.DataFrame(cm_ha, columns=names).assign(**{"map \\ reference": names})[
        ["map \\ reference", *names]
    ]
    tables["per_class"] = pd.DataFrame([{"class": n, **v} for n, v in metrics["per_class"].items()])
    tables["blocks"] = blocks
    tables["by_tile"] = pd.DataFrame(agreement_by(blocks, "tile", comp.pixel_ha))
    tables["by_bioregion"] = pd.DataFrame(agreement_by(blocks, "bioregion", comp.pixel_ha))
    metrics["by_tile"] = tables["by_tile"].to_dict("records")
    metrics["by_bioregion"] = tables["by_bioregion"].to_dict("records")
    sections: list[tuple[str, str]] = []
    oa = metrics["overall_agreement"]
    kpis = [
        ("overall agreement", f"{oa * 100:.1f} %" if oa is not None else "n/a (0 pixels compared)"),
        ("area compared", f"{metrics['area_compared_ha']:,.1f} ha"),
        ("reference alignment", comp.resampling),
        ("crosswalk", cw.name),
    ]
    if points is not None:
        ps = sample_accuracy(map_path, read_points(points), legend, source=points.name)
        metrics["reference_sample"] = ps.to_json(legend)
        e = ps.estimates
        tables["area_estimates"] = pd.DataFrame(
            {
                "class": names,
                "n_points": e.n_per_stratum.astype(int),
                "mapped_ha": ps.mapped_ha,
                "estimated_ha": e.area,
                "ci95_ha": e.area_ci95,
                "users": e.users,
                "users_ci95": e.users_ci95,
                "producers": e.producers,
                "producers_ci95": e.producers_ci95,
            }
        )
        kpis.append(
            (
                "overall accuracy (points)",
                f"{e.overall * 100:.1f} ± {e.overall_ci95 * 100:.1f} %"
                if np.isfinite(e.overall)
                else f"n/a ({ps.n_points} points)",
            )
        )
        warn = "".join(f"<li>{html.escape(w)}</li>" for w in e.warnings)
        sections.append(
            (
                "Accuracy and area from the reference sample",
                (
                    f"<p>{ps.n_points} reference points inside the map ({ps.n_outside} outside, "
                    f"{ps.n_map_nodata} on map nodata, {ps.n_unlabelled} without a Level-1 class), strata = map "
                    "classes; estimators of Olofsson et al. (2014, RSE 148:42–57), 95 % confidence intervals.</p>"
                    + (f"<ul class='note'>{warn}</ul>" if warn else "")
                    + _img(fig.area_bars(names, ps.mapped_ha, e.area, e.area_ci95), "area estimates")
                    + _table(tables["area_estimates"], na_rep="not estimable")
                ),
            )
        )
    if ood is not None:
        section, ood_table, metrics["ood"] = _ood_section(comp, ood, legend)
        tables["ood"] = ood_table
        share = metrics["ood"]["share"]
        kpis.append(("flagged out of distribution", "n/a (0 pixels)" if share is None else f"{share * 100:.1f} %"))
        sections.append(("Where the model is out of its depth", section))
    if drift_table_ is not None and drift is not None:
        tables["drift"] = drift_table_
        metrics["drift"] = {"file": drift.name, "tiles": drift_table_.to_dict("records")}
        ood_share = metrics.get("ood", {}).get("share")
        beside = (
            ""
            if ood is None
            else f"<p>The OOD layer flags <b>{'n/a' if ood_share is None else f'{ood_share * 100:.1f} %'}</b> of "
            "the mapped pixels (previous section).</p>"
        )
        sections.append(
            (
                "Drift and the OOD layer",
                (
                    f"<p>From <code>{html.escape(drift.name)}</code> (<code>eulc drift --out</code>), "
                    "per feature file:</p>"
                    + _table(drift_table_, "{:,.3f}")
                    + beside
                    + f"<p class='note'>{html.escape(READ_WITH_OOD)}</p>"
                ),
            )
        )
    if previous is not None:
        trans, _ = transition_matrix(previous, map_path, legend)
        tables["transitions_ha"] = pd.DataFrame(trans, columns=names).assign(**{"from \\ to": names})[
            ["from \\ to", *names]
        ]
        metrics["transitions_ha"] = {"rows": "previous", "columns": "this map", "matrix": trans.tolist()}
        sections.append(
            (
                "Change since the previous map",
                (
                    f"<p class='note'>Previous map: {html.escape(previous.name)} (aligned by nearest neighbour).</p>"
                    + _img(fig.change_bars(names, trans), "change")
                    + _table(tables["transitions_ha"])
                ),
            )
        )
    if zones is not None:
        maps = {"previous": previous, "map": map_path} if previous is not None else {"map": map_path}
        tables["zones"] = zone_table(maps, zones, legend)
        z = tables["zones"]
        shared = sorted({str(n) for n in z["zone"] if " ∩ " in str(n)})
        note = (
            f"<p class='note'>Zones overlap in {html.escape(str(zones.name))}: the pixels shared by two or more "
            f"zones are counted once, in a zone of their own ({html.escape(', '.join(shared[:8]))}"
            f"{' ...' if len(shared) > 8 else ''}), never given to one of them by drawing order.</p>"
            if shared
            else ""
        )
        metrics["zones_overlapping"] = shared
        sections.append(("Composition per zone", note + _table(z[z.filter(like="_ha").sum(axis=1) > 0])))
    kpi_html = "".join(f"<div class='kpi'><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>" for k, v in kpis)
    worst = tables["blocks"].head(10).copy()
    if not worst.empty:
        worst.insert(0, "#", range(1, len(worst) + 1))
    rep = comp.crosswalk_report
    body = [
        ("Summary", f"<div class='kpis'>{kpi_html}</div>"),
        (
            "Map, reference and disagreement",
            _img(fig.quicklooks(comp.thumb_map, comp.thumb_ref, extent, legend, comp.crs), "quicklooks"),
        ),
        (
            "Agreement per class",
            "<div class='row'>"
            + _img(fig.confusion_heatmap(cm_ha, names), "confusion")
            + _img(fig.class_bars(metrics["per_class"]), "per class")
            + "</div>"
            + _table(tables["per_class"], "{:,.3f}"),
        ),
        (
            "Where the maps disagree",
            (_img(fig.block_map(blocks, extent, comp.block_m), "blocks") if len(blocks) else "")
            + "<p class='note'>The ten blocks with the lowest agreement (hotspots):</p>"
            + _table(worst, "{:,.3f}")
            + "<div class='row'><div><p class='note'>Per EEA 10 km tile:</p>"
            + _table(tables["by_tile"], "{:,.3f}")
            + "</div><div><p class='note'>Per biogeographical region:</p>"
            + _table(tables["by_bioregion"], "{:,.3f}")
            + "</div></div>",
        ),
        *sections,
        (
            "Method",
            (
                f"<p>The reference ({html.escape(reference.name)}) was reprojected onto the map grid "
                f"({html.escape(comp.crs)}, "
                f"{abs(comp.transform.a):g} m) with <b>{comp.resampling}</b> resampling "
                "(mode when the reference is finer, nearest otherwise) and crosswalked to Level-1 with "
                f"<b>{html.escape(cw.name)}</b> (<code>pipeline/legends/{html.escape(cw.name)}.csv</code>). "
                f"{metrics['excluded']['map_nodata']:,} map-nodata pixels and "
                f"{metrics['excluded']['reference_nodata_or_dropped']:,} "
                "reference nodata or dropped pixels were left out; codes dropped on purpose: "
                f"{html.escape(_dropped(rep.get('dropped') or {}))}. Confusion rows are map classes, columns reference "
                "classes; user's accuracy = diagonal / row, producer's = diagonal / column.</p>"
            ),
        ),
        ("Model card", _model_card(bundle, map_path)),
    ]
    title = title or f"Land-cover map {map_path.name} compared with {reference.name}"
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>eulc comparison report · "
        f"{dt.date.today().isoformat()} · map {html.escape(str(map_path))}</p></header><main>"
        + "".join(f"<section><h2>{html.escape(h)}</h2>{c}</section>" for h, c in body)
        + "</main><footer>Generated by eulc · BRIDGE-LC (Ghassemi et al. 2025) · Olofsson et al. 2014</footer>"
        "</body></html>"
    )
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    for name, df in tables.items():
        with atomic_path(out / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False)
    metrics["hotspots"] = blocks.head(10).to_dict("records")
    metrics["files"] = sorted(["report.html", "metrics.json", "disagreement.tif", *(f"{n}.csv" for n in tables)])
    write_json(out / "metrics.json", metrics)
    return metrics
