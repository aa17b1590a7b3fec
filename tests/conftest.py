"""Shared fixtures. Real-data tests FAIL (never skip) when EULC_DATA is missing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from pipeline.core.config import data_dir
from pipeline.core.errors import DataDirError

ELC10 = Path("elc10_lucas2018") / "lucas2018_elc10_s2_s1_features.csv.gz"
SAMPLE = Path("derived") / "lucas2018_elc10_lc1_sample1640.csv"
SURVEY = Path("lucas2018_survey_points") / "lucas2018_topsoil_points_survey_attrs.csv"
SLO = Path("eolearn_testeopatch_slovenia")
NDVI_FEATURES = ["ndvi_p5", "ndvi_p25", "ndvi_p50", "ndvi_p75", "ndvi_p95", "ndvi_summer",
                 "ndvi_winter", "ndvi_spring", "ndvi_fall", "ndvi_texture_sd"]


@pytest.fixture(scope="session")
def data() -> Path:
    """The real-data directory; a missing one is a test failure, not a skip."""
    try:
        return data_dir()
    except DataDirError as e:
        pytest.fail(f"real data not found: {e}")


@pytest.fixture(scope="session")
def elc10_frame(data: Path) -> pd.DataFrame:
    return pd.read_csv(data / ELC10)


@pytest.fixture(scope="session")
def sample_table(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FeatureTable of the real 1,640-row LUCAS sample with LC1/LU1 labels."""
    from pipeline.core.spec import load_spec
    from pipeline.table import build_feature_table, write_feature_table

    gdf, _ = build_feature_table([data / SAMPLE], load_spec("elc10"), lucas_file=data / SURVEY)
    out = tmp_path_factory.mktemp("table") / "sample.parquet"
    write_feature_table(gdf, out)
    return out


@pytest.fixture(scope="session")
def slovenia_features(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The feature COG of the 10 NDVI features for 2017 from the real Slovenia stack."""
    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec
    from tiles.engine.run import features_from_stack

    spec = load_spec("elc10")
    sel = FeatureSelection.of(spec, NDVI_FEATURES, "names")
    dest = tmp_path_factory.mktemp("features") / "slo_2017.tif"
    return features_from_stack("eolearn_slovenia", spec, sel, 2017, dest)


@pytest.fixture(scope="session")
def small_bundle(sample_table: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BRIDGE-LC bundle trained briefly on the real sample (NDVI features)."""
    from model.api import train_from_table
    from model.train import TrainConfig
    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec

    sel = FeatureSelection.of(load_spec("elc10"), NDVI_FEATURES, "names")
    out = tmp_path_factory.mktemp("bundle") / "model"
    train_from_table(sample_table, out, sel, TrainConfig(epochs=30, lr=1e-3, batch_size=64))
    return out


def build_elc10_table(src: Path, dest: Path) -> Path:
    """Build the `elc10` FeatureTable of one real CSV at ``dest`` (labels from the file)."""
    from pipeline.core.spec import load_spec
    from pipeline.table import build_feature_table, write_feature_table

    table, _ = build_feature_table([src], load_spec("elc10"))
    write_feature_table(table, dest)
    return dest


@pytest.fixture(scope="session")
def full_table(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FeatureTable of the full real ELC10 LUCAS 2018 table (62k rows, 35 features)."""
    return build_elc10_table(data / ELC10, tmp_path_factory.mktemp("full") / "elc10.parquet")
