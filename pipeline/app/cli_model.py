"""``eulc table``, ``train``, ``evaluate`` and ``select``: training tables and models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.app.cli_common import (
    BUNDLE_HELP,
    DeviceOpt,
    EmaOpt,
    EventView,
    FeaturesOpt,
    LandscapesOpt,
    LevelOpt,
    app,
    console,
    out_console,
)


@app.command()
def table(
    exports: Annotated[list[Path], typer.Argument(help="GEE sampleRegions CSV export(s)")],
    out: Annotated[Path, typer.Option("--out", help="output FeatureTable (.parquet)")],
    spec: Annotated[str, typer.Option(help="feature spec name or YAML path")] = "elc10",
    lucas: Annotated[Path | None, typer.Option(help="LUCAS point CSV with LC1/LU1")] = None,
    year: Annotated[int | None, typer.Option(help="survey year (default: the spec's)")] = None,
) -> None:
    """Build a FeatureTable (GeoParquet) from GEE exports, labels and bioregions; a rerun on the
    same exports and spec says it is up to date (.eulc-table.json beside it).
    """
    from pipeline.stages.table import TableRequest, build_table

    with EventView("table") as view:
        res = build_table(TableRequest(tuple(exports), out, spec, lucas, year), view)
    if res.up_to_date:
        out_console.print(f"{out} is up to date")
        return
    for line in res.lines:
        console.print(f"  {line}", highlight=False, markup=False)
    out_console.print(f"wrote {out}")


@app.command()
def train(
    table_path: Annotated[Path, typer.Argument(help="FeatureTable from `eulc table`")],
    out: Annotated[Path, typer.Option("--out", help="bundle directory")],
    features: FeaturesOpt = None,
    spec: Annotated[str | None, typer.Option(help="feature spec name or YAML path (default: the table's)")] = None,
    level: LevelOpt = "level1",
    epochs: Annotated[int, typer.Option(help="training epochs (paper: 500)")] = 500,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (paper: 1e-4)")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="batch size (authors' code: 128)")] = 128,
    seed: Annotated[int, typer.Option()] = 0,
    ema: EmaOpt = True,
    preset: Annotated[
        str,
        typer.Option(
            help="eulc (default: blocked hold-out selection + calibration), eulc-plain, eulc-coords, eulc-tabm, "
            "eulc-ple, eulc-tabm-ple, bridge-lc (faithful) or mlp"
        ),
    ] = "eulc",
    overwrite: Annotated[
        bool, typer.Option(help="replace an existing bundle in --out (never a folder holding other files)")
    ] = False,
    device: DeviceOpt = "auto",
    test_fraction: Annotated[
        float,
        typer.Option(help="share of rows (whole EEA 100 km cells) kept untouched for the bundle's reported metrics"),
    ] = 0.1,
    landscapes: LandscapesOpt = 16,
    model: Annotated[
        str,
        typer.Option(
            help="network (eulc's model; --preset picks the variant) or xgboost: the paper's baseline as a bundle "
            "in XGBoost's JSON format, calibrated on the same hold-out and scored on the same untouched cells, "
            "that `eulc map` runs like the network (no --ood)"
        ),
    ] = "network",
    xgboost_setting: Annotated[
        str,
        typer.Option(
            help="with --model xgboost: paper (300 rounds, depth 6), deep, shallow, or tuned (the best of the three "
            "on the blocked hold-out)"
        ),
    ] = "paper",
) -> None:
    """Train a model (eulc's default, faithful BRIDGE-LC, a plain MLP, or with --model xgboost the
    paper's XGBoost baseline) and write a ModelBundle (safetensors or XGBoost JSON, + JSON), with
    the OOD reference of a network's training rows (`eulc map --ood`). A rerun with the same
    table, features and settings says the bundle is up to date.
    """
    from pipeline.stages.train import TrainRequest
    from pipeline.stages.train import train as run

    req = TrainRequest(
        table=table_path,
        out=out,
        features=features,
        spec=spec,
        level=level,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        ema=ema,
        preset=preset,
        overwrite=overwrite,
        device=device,
        test_fraction=test_fraction,
        landscapes=landscapes,
        model=model,
        xgboost_setting=xgboost_setting,
    )
    with EventView("training") as view:
        res = run(req, view)
    metrics = res.metrics
    if res.up_to_date:
        out_console.print(f"{out} is up to date (trained from the same table, features and settings)")
        return
    if "test_weighted_f1" in metrics:
        how = "whole 100 km cells" if metrics.get("test_split") == "blocked" else "a random draw: ≤ 10 cells"
        msg = (
            f"wrote {out}: on {metrics['n_test']:,} untouched rows ({how}) accuracy "
            f"{metrics['test_accuracy']:.3f}, weighted F1 {metrics['test_weighted_f1']:.3f}, "
            f"ECE {metrics['test_ece'] * 100:.1f} %"
        )
    else:
        msg = (
            f"wrote {out}: {metrics.get('holdout', '')} hold-out accuracy {metrics.get('val_accuracy', 0):.3f}, "
            f"weighted F1 {metrics.get('val_weighted_f1', 0):.3f} (also used for selection: optimistic)"
        )
    if "temperature" in metrics:
        msg += f"; temperature T = {metrics['temperature']:.2f} fitted on the hold-out"
    if model == "xgboost":
        msg += f"; XGBoost setting {metrics.get('xgboost_setting')} (no OOD reference: it needs a network)"
    elif landscapes:
        msg += f"; OOD reference of the training rows stored (K = {landscapes}; `eulc map --ood`)"
    out_console.print(msg)


@app.command()
def evaluate(
    table_path: Annotated[Path, typer.Option("--table", help="FeatureTable from `eulc table`")],
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    bundle: Annotated[Path | None, typer.Option(help=f"evaluate this bundle on the table; {BUNDLE_HELP}")] = None,
    scenario: Annotated[
        str | None, typer.Option(help="extrap, extrap-blocked, loro or ablation (Table 12 variants on LORO)")
    ] = None,
    features: FeaturesOpt = None,
    models: Annotated[
        str,
        typer.Option(
            help="comma-separated: bridge-lc (faithful), eulc (default), eulc-plain, eulc-coords, eulc-tabm, eulc-ple, "
            "eulc-tabm-ple, eulc-v1, mlp, "
            "nested (the best candidate preset per split, chosen on training-side data), rf, xgboost, svm, "
            "xgboost-tuned (its setting chosen per split the same way)"
        ),
    ] = "bridge-lc,eulc,mlp,rf,xgboost,svm",
    seeds: Annotated[int, typer.Option(help="number of seeds (paper-style: >= 5)")] = 5,
    epochs: Annotated[int, typer.Option(help="neural-model epochs (paper: 500)")] = 500,
    lr: Annotated[float, typer.Option(help="neural-model learning rate (paper: 1e-4)")] = 1e-4,
    level: LevelOpt = "level1",
    regions: Annotated[str | None, typer.Option(help="LORO regions, comma-separated (default: all 8)")] = None,
    max_rows: Annotated[
        int | None, typer.Option(help="quick runs: a random subsample of this many rows, drawn anew for each seed")
    ] = None,
    ema: EmaOpt = True,
    adapt_priors: Annotated[
        bool,
        typer.Option(
            help="also report <model>+em: test posteriors adapted to the test area's class priors, "
            "estimated by Dirichlet-MAP EM on its unlabelled features (Saerens et al. 2002), with the "
            "strength and guard chosen per split on inner held-out bioregions of its training side; and "
            "<model>+rt: test posteriors softened by the temperature those inner regions ask for"
        ),
    ] = False,
    select_k: Annotated[
        int | None, typer.Option(help="keep the top k features by RF importance fitted on each split's training rows")
    ] = None,
    calibrate_baselines: Annotated[
        bool,
        typer.Option(
            help="also report rf+ts and xgboost+ts: fitted on the rows the network trains on and "
            "temperature-scaled on the blocked hold-out it calibrates on (fair ECE)"
        ),
    ] = False,
    inner: Annotated[
        str,
        typer.Option(
            help="what nested and xgboost-tuned choose on, inside each split's training side: cells (a blocked "
            "hold-out of 15 % of its 100 km cells) or regions (whole held-out bioregions, the shift LORO tests)"
        ),
    ] = "cells",
    device: DeviceOpt = "auto",
) -> None:
    """Evaluate a bundle on a table (metrics.json), or run a paper scenario (CSV + Markdown)."""
    from pipeline.stages.evaluate import EvaluateRequest
    from pipeline.stages.evaluate import evaluate as run

    req = EvaluateRequest(
        table=table_path,
        out=out,
        bundle=None if bundle is None else str(bundle),
        scenario=scenario,
        features=features,
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        seeds=seeds,
        epochs=epochs,
        lr=lr,
        level=level,
        regions=tuple(r.strip() for r in regions.split(",")) if regions else None,
        max_rows=max_rows,
        ema=ema,
        adapt_priors=adapt_priors,
        select_k=select_k,
        calibrate_baselines=calibrate_baselines,
        inner=inner,
        device=device,
    )
    with EventView(scenario or "evaluate") as view:
        res = run(req, view)
    if res.metrics is not None:
        m = res.metrics
        left_out = {k: v for k, v in m["dropped"].items() if v}
        out_console.print(
            f"overall accuracy {m['overall_accuracy']:.4f}, weighted F1 {m['weighted_f1']:.4f}, "
            f"ECE {100 * m['ece']:.1f} % on {m['n']:,} rows"
            + (f" (left out, not imputed: {left_out})" if left_out else "")
            + f"; wrote {out / 'metrics.json'}"
        )
        return
    assert res.summary_md is not None and res.runs is not None
    out_console.print(res.summary_md.read_text())
    out_console.print(f"{len(res.runs)} runs; wrote {res.runs_csv}")


@app.command()
def select(
    table_path: Annotated[Path, typer.Option("--table", help="FeatureTable from `eulc table`")],
    out: Annotated[Path, typer.Option("--out", help="FeatureSelection JSON to write")],
    k: Annotated[int | None, typer.Option(help="features to keep (default: 109 of 196, else the same share)")] = None,
    method: Annotated[str, typer.Option(help="mdi (impurity) or permutation (blocked hold-out)")] = "mdi",
    seeds: Annotated[int, typer.Option(help="RF seeds to average (stability is reported)")] = 3,
    level: LevelOpt = "level1",
    curve: Annotated[Path | None, typer.Option(help="also write the accuracy-vs-k curve (CSV + PNG) here")] = None,
) -> None:
    """Rank features by Random-Forest importance and keep the top k (paper §2, after Ghassemi et al. 2024)."""
    from pipeline.stages.select import SelectRequest
    from pipeline.stages.select import select as run

    with EventView("select") as view:
        res = run(SelectRequest(table_path, out, k, method, seeds, level, curve), view)
    sel = res.selection
    kk = len(sel.names)
    out_console.print(f"kept {kk} of {res.n_features}: {', '.join(sel.names[:10])}{' …' if kk > 10 else ''}")
    out_console.print(f"stability: {sel.note}; wrote {out}")
    if res.curve is not None and curve is not None:
        out_console.print(res.curve.to_string(index=False))
        out_console.print(f"wrote {curve / 'accuracy_vs_k.csv'} and .png")


@app.command("ood")
def ood_(
    bundle: Annotated[Path, typer.Argument(help="a bundle folder written by `eulc train`")],
    table_path: Annotated[Path, typer.Option("--table", help="FeatureTable from `eulc table`")],
    landscapes: LandscapesOpt = 16,
) -> None:
    """Add the OOD reference (landscape clusters and feature-space distance of the training rows)
    to a bundle trained without one, for `eulc map --ood`. --table must be the very table the
    bundle was trained on (its hash is checked); the weights are not touched.
    """
    from pipeline.stages.ood import OodRequest, add_ood

    with EventView("ood") as view:
        ref = add_ood(OodRequest(bundle, table_path, landscapes), view)
    rare = int((ref.share < ref.rare_share).sum())
    out_console.print(
        f"wrote {bundle / 'ood.json'} and ood.safetensors: K = {ref.k} landscapes "
        f"({rare} hold under {ref.rare_share:.0%} of the {ref.info['n_rows']:,} training rows), "
        f"thresholds at the training {ref.info['quantile']:.0%} quantile"
    )
