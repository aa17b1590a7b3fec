"""``eulc table``, ``train``, ``evaluate`` and ``select``: training tables and models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.app.cli_common import (
    BUNDLE_HELP,
    DeviceOpt,
    EmaOpt,
    FeaturesOpt,
    LandscapesOpt,
    LevelOpt,
    _progress,
    _table_selection,
    app,
    console,
    out_console,
)
from pipeline.core.errors import EulcError


@app.command()
def table(
    exports: Annotated[list[Path], typer.Argument(help="GEE sampleRegions CSV export(s)")],
    out: Annotated[Path, typer.Option("--out", help="output FeatureTable (.parquet)")],
    spec: Annotated[str, typer.Option(help="feature spec name or YAML path")] = "elc10",
    lucas: Annotated[Path | None, typer.Option(help="LUCAS point CSV with LC1/LU1")] = None,
    year: Annotated[int | None, typer.Option(help="survey year (default: the spec's)")] = None,
) -> None:
    """Build a FeatureTable (GeoParquet) from GEE exports, labels and bioregions."""
    from pipeline.core.spec import load_spec
    from pipeline.table import build_feature_table, check_table_dest, write_feature_table

    check_table_dest(out)  # before reading anything
    with console.status("building the training table"):
        gdf, rep = build_feature_table(exports, load_spec(spec), lucas, year)
        write_feature_table(gdf, out)
    for line in rep.lines():
        console.print(f"  {line}")
    out_console.print(f"wrote {out}")


@app.command()
def train(
    table_path: Annotated[Path, typer.Argument(help="FeatureTable from `eulc table`")],
    out: Annotated[Path, typer.Option("--out", help="bundle directory")],
    features: FeaturesOpt = None,
    spec: Annotated[str | None, typer.Option(
        help="feature spec name or YAML path (default: the table's)")] = None,
    level: LevelOpt = "level1",
    epochs: Annotated[int, typer.Option(help="training epochs (paper: 500)")] = 500,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (paper: 1e-4)")] = 1e-4,
    batch_size: Annotated[int, typer.Option(help="batch size (authors' code: 128)")] = 128,
    seed: Annotated[int, typer.Option()] = 0,
    ema: EmaOpt = True,
    preset: Annotated[str, typer.Option(
        help="eulc (default: blocked hold-out selection + calibration), bridge-lc (faithful) or mlp")] = "eulc",
    overwrite: Annotated[bool, typer.Option(
        help="replace an existing bundle in --out (never a folder holding other files)")] = False,
    device: DeviceOpt = "auto",
    test_fraction: Annotated[float, typer.Option(
        help="share of rows (whole EEA 100 km cells) kept untouched for the bundle's reported metrics")] = 0.1,
    landscapes: LandscapesOpt = 16,
) -> None:
    """Train a model (eulc's default, faithful BRIDGE-LC or a plain MLP) and write a ModelBundle
    (safetensors + JSON), with the OOD reference of its training rows (`eulc map --ood`).
    """
    from model.api import train_from_table
    from model.infer import resolve_device
    from pipeline.core.spec import load_spec
    from pipeline.table import table_metadata, table_spec

    sel = _table_selection(load_spec(spec) if spec else table_spec(table_metadata(table_path), f"table {table_path}"),
                           features)
    if level not in ("level1", "level2"):
        raise typer.BadParameter(f"--level must be level1 or level2, not {level!r}")
    if landscapes < 0:
        raise typer.BadParameter(f"--landscapes must be 0 (no OOD reference) or more, not {landscapes}")
    from model.presets import PRESETS, preset_config

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; use one of {list(PRESETS)}")
    cfg = preset_config(preset, None, level=level, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                        device=str(resolve_device(device)), test_fraction=test_fraction,
                        **({} if ema else {"ema_momentum": None}))  # validated: --epochs -3 is refused
    with _progress() as prog:
        task = prog.add_task("training", total=epochs, info="")
        metrics = train_from_table(
            table_path, out, sel, cfg,
            lambda e, loss: prog.update(task, completed=e, info=f"loss {loss:.3f}"), overwrite=overwrite,
            landscapes=landscapes)
    if "test_weighted_f1" in metrics:
        msg = (f"wrote {out}: on {metrics['n_test']:,} untouched rows (whole 100 km cells) accuracy "
               f"{metrics['test_accuracy']:.3f}, weighted F1 {metrics['test_weighted_f1']:.3f}, "
               f"ECE {metrics['test_ece'] * 100:.1f} %")
    else:
        msg = (f"wrote {out}: {metrics.get('holdout', '')} hold-out accuracy {metrics.get('val_accuracy', 0):.3f}, "
               f"weighted F1 {metrics.get('val_weighted_f1', 0):.3f} (also used for selection: optimistic)")
    if "temperature" in metrics:
        msg += f"; temperature T = {metrics['temperature']:.2f} fitted on the hold-out"
    if landscapes:
        msg += f"; OOD reference of the training rows stored (K = {landscapes}; `eulc map --ood`)"
    out_console.print(msg)


@app.command()
def evaluate(
    table_path: Annotated[Path, typer.Option("--table", help="FeatureTable from `eulc table`")],
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    bundle: Annotated[Path | None, typer.Option(help=f"evaluate this bundle on the table; {BUNDLE_HELP}")] = None,
    scenario: Annotated[str | None, typer.Option(
        help="extrap, extrap-blocked, loro or ablation (Table 12 variants on LORO)")] = None,
    features: FeaturesOpt = None,
    models: Annotated[str, typer.Option(
        help="comma-separated: bridge-lc (faithful), eulc (default), eulc-v1, mlp, nested (the best "
             "candidate preset per split, chosen on training-side data), rf, xgboost, svm")
    ] = "bridge-lc,eulc,mlp,rf,xgboost,svm",
    seeds: Annotated[int, typer.Option(help="number of seeds (paper-style: >= 5)")] = 5,
    epochs: Annotated[int, typer.Option(help="neural-model epochs (paper: 500)")] = 500,
    lr: Annotated[float, typer.Option(help="neural-model learning rate (paper: 1e-4)")] = 1e-4,
    level: LevelOpt = "level1",
    regions: Annotated[str | None, typer.Option(help="LORO regions, comma-separated (default: all 8)")] = None,
    max_rows: Annotated[int | None, typer.Option(
        help="quick runs: a random subsample of this many rows, drawn anew for each seed")] = None,
    ema: EmaOpt = True,
    adapt_priors: Annotated[bool, typer.Option(
        help="also report <model>+em: test posteriors adapted to the test area's class priors, "
             "estimated by EM on its unlabelled features (Saerens et al. 2002)")] = False,
    select_k: Annotated[int | None, typer.Option(
        help="keep the top k features by RF importance fitted on each split's training rows")] = None,
    device: DeviceOpt = "auto",
) -> None:
    """Evaluate a bundle on a table (metrics.json), or run a paper scenario (CSV + Markdown)."""
    from pipeline.core.atomic import write_json

    if bundle is not None:
        from model.evaluate import evaluate_bundle
        from pipeline.app.pretrained import resolve_bundle

        m = evaluate_bundle(resolve_bundle(bundle), table_path)
        write_json(out / "metrics.json", m)
        left_out = {k: v for k, v in m["dropped"].items() if v}
        out_console.print(f"overall accuracy {m['overall_accuracy']:.4f}, weighted F1 {m['weighted_f1']:.4f}, "
                          f"ECE {100 * m['ece']:.1f} % on {m['n']:,} rows"
                          + (f" (left out, not imputed: {left_out})" if left_out else "")
                          + f"; wrote {out / 'metrics.json'}")
        return
    if scenario is None:
        raise typer.BadParameter("give --bundle or --scenario")
    from model.evaluate import run_scenario
    from pipeline.table import table_metadata, table_spec

    chosen = tuple(m.strip() for m in models.split(",") if m.strip())
    sel = _table_selection(table_spec(table_metadata(table_path), f"table {table_path}"), features)
    from model.infer import resolve_device
    from model.presets import FAITHFUL, preset_config

    # the base schedule of every neural model, through the validators (--epochs 0 is refused)
    cfg = preset_config(FAITHFUL, None, level=level, epochs=epochs, lr=lr, device=str(resolve_device(device)),
                        **({} if ema else {"ema_momentum": None}))
    with _progress() as prog:
        task = prog.add_task(scenario, total=None, info="")

        def on_plan(n: int) -> None:
            prog.update(task, total=n)

        df = run_scenario(table_path, sel.names, scenario, out, chosen, tuple(range(seeds)), cfg,
                          [r.strip() for r in regions.split(",")] if regions else None, max_rows,
                          lambda r: prog.update(task, advance=1, info=f"{r['split']} {r['model']}: "
                                                                       f"F1 {r['weighted_f1']:.3f}"),
                          adapt_priors=adapt_priors, select_k=select_k, on_plan=on_plan)
    out_console.print((out / f"{scenario}_summary.md").read_text())
    out_console.print(f"{len(df)} runs; wrote {out / f'{scenario}_runs.csv'}")


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
    from model.importance import accuracy_vs_k, curve_png, default_k, default_ks, rf_importance, select_top_k
    from model.train import training_arrays
    from pipeline.table import read_feature_table, table_metadata, table_spec

    if method not in ("mdi", "permutation"):
        raise typer.BadParameter(f"unknown method {method!r}; use mdi or permutation")
    spec = table_spec(table_metadata(table_path), f"table {table_path}")
    table, _ = read_feature_table(table_path)
    names = [n for n in spec.names if n in table.columns]
    d = training_arrays(table, names, level)
    kk = k if k is not None else default_k(len(names))
    dropped = {kk_: v for kk_, v in d.dropped.items() if v}
    out_console.print(f"{len(d.y):,} rows, {len(names)} features" + (f"; left out: {dropped}" if dropped else ""))
    with _progress() as prog:
        task = prog.add_task(f"RF importance ({method})", total=seeds, info="")
        imp = rf_importance(d.x, d.y, d.cells, names, method,  # type: ignore[arg-type]
                            tuple(range(seeds)), lambda s: prog.update(task, advance=1))
    sel = select_top_k(spec, imp, kk)
    sel.save(out)
    out_console.print(f"kept {kk} of {len(names)}: {', '.join(sel.names[:10])}{' …' if kk > 10 else ''}")
    out_console.print(f"stability: {sel.note}; wrote {out}")
    if curve is not None:
        from pipeline.core.atomic import atomic_path

        with _progress() as prog:
            task = prog.add_task("accuracy vs k", total=len(default_ks(len(names))), info="")
            df = accuracy_vs_k(d.x, d.y, d.cells, names, method,  # type: ignore[arg-type]
                               on_k=lambda kv, f1: prog.update(task, advance=1, info=f"k={kv}: F1 {f1:.3f}"))
        with atomic_path(curve / "accuracy_vs_k.csv") as tmp:
            df.to_csv(tmp, index=False)
        curve_png(df, str(curve / "accuracy_vs_k.png"), f"{spec.name}: RF on top-k features ({method})", kk)
        out_console.print(df.to_string(index=False))
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
    from model.api import fit_ood_for_bundle
    from pipeline.app.pretrained import models_dir

    if landscapes < 1:
        raise typer.BadParameter("--landscapes must be at least 1 here")
    if bundle.resolve().parent == models_dir().resolve():
        raise EulcError(f"{bundle} is a bundle shipped with eulc", "Shipped bundles carry their OOD reference; "
                        "give a bundle folder you trained")
    with console.status(f"fitting the OOD reference of {bundle} on its training rows"):
        ref = fit_ood_for_bundle(bundle, table_path, landscapes)
    rare = int((ref.share < ref.rare_share).sum())
    out_console.print(f"wrote {bundle / 'ood.json'} and ood.safetensors: K = {ref.k} landscapes "
                      f"({rare} hold under {ref.rare_share:.0%} of the {ref.info['n_rows']:,} training rows), "
                      f"thresholds at the training {ref.info['quantile']:.0%} quantile")
