"""The main job, end to end on real data, as stage calls: model → features → map → agreement → report.

1. Feature selection = the `elc10` features that the real Slovenia Sentinel-2 L1C stack can
   compute for the map year (it has no Sentinel-1, and all 13 bands only on 5 dates of 2015,
   so for 2017 these are the 10 NDVI features).
2. The model: the shipped pretrained Level-1 bundle (``models/``) that uses the most of those
   features (:func:`pipeline.stages.pretrained.pick_bundle`). With ``train=True``, or when no
   shipped bundle fits, the table stage builds a FeatureTable from the real ELC10 LUCAS 2018
   export (62k points) and the train stage trains BRIDGE-LC on the selection (a short schedule:
   10 epochs at lr 1e-3, no weight EMA).
3. The features stage (:func:`tiles.engine.runner.run_features`) writes the stack's feature COG
   (EPSG:3035, 10 m) and the map stage's runner (:func:`tiles.mapping.runner.run_map`, the
   production path) the class/confidence (and OOD) COGs, the STAC item and the manifest.
4. Agreement with the eo-learn LULC reference map, crosswalked to Level-1, a quicklook and the
   HTML report.

Every step resumes through :mod:`pipeline.core.ledger`: the selection, table and train steps in
``out/.eulc_steps.json``, the features in ``out/features/.eulc-features.json``, the map in
``out/maps/manifest.sqlite``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.bundle import load_bundle_cached
from model.presets import FAITHFUL, preset_config
from pipeline.assess.agreement import agreement
from pipeline.assess.quicklook import quicklook
from pipeline.assess.report import ood_beside, write_report
from pipeline.core.atomic import WriteError, write_json
from pipeline.core.config import data_dir, demo_data_dir
from pipeline.core.errors import EulcError
from pipeline.core.ledger import JsonLedger, input_key
from pipeline.core.legend import Crosswalk, level1_legend
from pipeline.core.selection import FeatureSelection
from pipeline.core.spec import load_spec
from pipeline.stages.events import Event, ignore
from pipeline.stages.pretrained import pick_bundle
from pipeline.stages.table import TableRequest, build_table
from pipeline.stages.train import TrainRequest, train
from tiles.engine.features import computable_features
from tiles.engine.runner import FeatureSource, plan_features, run_features
from tiles.engine.stack import load_manifest, load_stack
from tiles.mapping.manifest import Manifest
from tiles.mapping.runner import run_map

ELC10_EXPORT = Path("elc10_lucas2018") / "lucas2018_elc10_s2_s1_features.csv.gz"
SLOVENIA = Path("eolearn_slovenia")
"""The demo's inputs, under :func:`pipeline.core.config.demo_data_dir` (shipped in the package)."""
STACK = "eolearn_slovenia_demo"
TILE_ID = "eolearn_slovenia"
STEPS_LEDGER = ".eulc_steps.json"


@dataclass(frozen=True)
class DemoRequest:
    """The demo's settings.

    Attributes:
        out: the output folder.
        epochs, lr: the short training schedule (with ``train``).
        year: the map year of the Slovenia stack.
        seed: the training seed.
        train: train a model here (from ``EULC_DATA``'s ELC10 table) instead of the shipped one.
    """

    out: Path
    epochs: int = 10
    lr: float = 1e-3
    year: int = 2017
    seed: int = 0
    train: bool = False


def run_demo(req: DemoRequest, on_event: Event = ignore) -> dict[str, Any]:
    """Run the main job into ``req.out`` and return the agreement dict (also in agreement.json).

    Outputs: ``out/selection.json``, with ``train`` also ``out/table.parquet`` and ``out/model/``;
    ``out/features/eolearn_slovenia_<year>.tif``; ``out/maps/eolearn_slovenia_{class,confidence}.tif``
    (and ``_ood.tif`` when the bundle has an OOD reference), ``eolearn_slovenia.json`` (STAC item),
    ``catalog.json``, ``manifest.sqlite`` and ``eolearn_slovenia_quicklook.png``;
    ``out/agreement.json``; ``out/report/report.html``. Events: ``step`` (step, message) and the
    train stage's ``progress`` per epoch.

    The stack and the reference map come with the package (``pipeline/demo_data``); only
    training (``train``, or no shipped bundle fitting) reads ``EULC_DATA`` (the ELC10 table).

    Raises:
        DataDirError: training was asked for and ``EULC_DATA`` does not point at the real data.
        EulcError: any stage's bad-input error.
    """
    out = Path(req.out)

    def say(step: str, msg: str) -> None:
        on_event("step", {"step": step, "message": msg})

    root = demo_data_dir()
    # training reads the ELC10 table from EULC_DATA: checked before anything is written
    export = data_dir((str(ELC10_EXPORT),)) / ELC10_EXPORT if req.train else None
    # the short schedule is validated before anything is written (epochs 0 is refused here)
    cfg = preset_config(FAITHFUL, None, epochs=req.epochs, lr=req.lr, seed=req.seed, ema_momentum=None)
    out.mkdir(parents=True, exist_ok=True)
    log = JsonLedger(out, STEPS_LEDGER)
    spec = load_spec("elc10")

    sel_path = out / "selection.json"
    key = input_key("selection", spec.digest(), STACK, req.year, root / SLOVENIA / "ndvi_68dates.tif")
    if log.current("selection", key):
        selection = FeatureSelection.load(sel_path)
    else:
        man, mroot = load_manifest(STACK)
        names = computable_features(spec, load_stack(man, mroot), req.year)
        selection = FeatureSelection.of(
            spec, names, "stack-availability", note=f"elc10 features computable from stack {STACK!r} for {req.year}"
        )
        selection.save(sel_path)
        log.finish("selection", key, [sel_path], names)
    say("selection", f"{len(selection.names)} features: {', '.join(selection.names)}")

    shipped = None if req.train else pick_bundle(selection.names)
    if shipped is not None:
        model_dir = shipped
        meta = load_bundle_cached(model_dir).meta
        say(
            "model",
            f"pretrained bundle {model_dir.name} ({len(meta['features'])} features, "
            f"blocked hold-out accuracy {meta['metrics'].get('val_accuracy', float('nan')):.3f}); "
            "`train` to train one here instead",
        )
        selection = FeatureSelection.of(
            spec, list(meta["features"]), "bundle", note=f"features of the shipped bundle {model_dir.name}"
        )
    else:
        export = export or data_dir((str(ELC10_EXPORT),)) / ELC10_EXPORT
        tab = build_table(TableRequest((export,), out / "table.parquet", spec="elc10"), on_event, ledger=log)
        for line in [] if tab.up_to_date else tab.lines:
            say("table", line)
        model_dir = out / "model"
        # short schedule: no weight EMA (5 per-epoch updates at momentum 0.95 would keep mostly the
        # epoch-6 weights; measured: hold-out accuracy 0.849 with it, 0.865 without)
        tr = train(
            TrainRequest(
                tab.path,
                model_dir,
                features=",".join(selection.names),
                level="level1",
                epochs=cfg.epochs,
                lr=cfg.lr,
                seed=cfg.seed,
                ema=False,
                preset=FAITHFUL,
                overwrite=True,
                device="cpu",
                test_fraction=cfg.test_fraction,
            ),
            on_event,
            ledger=log,
        )
        if not tr.up_to_date:
            say(
                "train",
                f"validation accuracy {tr.metrics.get('val_accuracy', float('nan')):.3f}, "
                f"weighted F1 {tr.metrics.get('val_weighted_f1', float('nan')):.3f}",
            )

    # the features stage's runner, in this process (one tile)
    feats_dir = out / "features"
    jobs = plan_features(None, FeatureSource(files=STACK), spec, selection, req.year, feats_dir, tile_id=TILE_ID)
    fs = run_features(jobs, feats_dir, scheduler="sync")
    if fs.failures:
        name, msg = next(iter(fs.failures.items()))
        raise (WriteError if name in fs.write_failures else EulcError)(msg)
    feat = jobs[0].dest
    say("features", f"up to date: {feat}" if fs.skipped else f"wrote {feat}")

    # the map stage's runner: the production path (manifest, STAC item, resume)
    maps = out / "maps"
    has_ood = load_bundle_cached(model_dir).ood() is not None  # the layer wherever the bundle has a reference
    ms = run_map(
        None,
        model_dir,
        maps,
        features_files=[feat],
        tile_ids=[TILE_ID],
        scheduler="sync",
        device="cpu",
        ood=has_ood,
        overwrite=True,
    )
    if ms.failures:
        name, msg = next(iter(ms.failures.items()))
        raise (WriteError if name in ms.write_failures else EulcError)(msg)
    if ms.skipped:
        say("map", f"up to date: {maps}")
    else:
        share = _ood_share(maps / "manifest.sqlite") if has_ood else None
        say(
            "map",
            f"wrote {TILE_ID}_class.tif, {TILE_ID}_confidence.tif{f', {TILE_ID}_ood.tif' if has_ood else ''} "
            f"({ms.pixels - ms.nodata:,} pixels, {ms.nodata:,} nodata"
            + (f"; {share:.1%} flagged out of distribution" if share is not None else "")
            + ")",
        )

    class_map = maps / f"{TILE_ID}_class.tif"
    reference = root / SLOVENIA / "lulc_reference.tif"
    result = agreement(class_map, reference, Crosswalk.shipped("eolearn_lulc"), level1_legend())
    write_json(out / "agreement.json", result)
    png = quicklook(
        class_map,
        maps / f"{TILE_ID}_confidence.tif",
        reference,
        Crosswalk.shipped("eolearn_lulc"),
        level1_legend(),
        maps / f"{TILE_ID}_quicklook.png",
        title=f"{model_dir.name} Level-1, Slovenia {req.year}: overall agreement {result['overall_accuracy']:.3f}",
    )
    say("quicklook", f"wrote {png}")
    write_report(
        class_map,
        reference,
        "eolearn_lulc",
        out / "report",
        bundle=model_dir,
        ood=ood_beside(class_map) if has_ood else None,
        title=f"eulc demo: {model_dir.name} Level-1 map of the Slovenia patch ({req.year}) vs eo-learn LULC",
    )
    say(
        "report",
        f"wrote {out / 'report' / 'report.html'} (no LUCAS 2018 point falls in this 1 km² patch, "
        "so the report has no sample-based area estimate)",
    )
    return result


def _ood_share(manifest: Path) -> float | None:
    """The demo tile's OOD share, from the map manifest."""
    m = Manifest(manifest)
    try:
        row = m.get(TILE_ID)
        return None if row is None else row.ood_share
    finally:
        m.close()
