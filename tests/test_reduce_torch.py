"""The torch reduction (issue #28): on the CPU it equals the numpy engine bit for bit, on random
series and on the real Slovenia feature tile; a bad or absent device is refused by name."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import given
from hypothesis import strategies as st

from model.reduce_torch import order_stats_on, torch_order_stats
from pipeline.core.errors import EulcError
from tiles.engine.composite import numpy_order_stats

from .conftest import NDVI_FEATURES


@given(
    st.integers(1, 75),
    st.floats(0.0, 1.0),
    st.lists(st.floats(0.0, 100.0), min_size=1, max_size=6),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_torch_equals_numpy_bit_for_bit(t: int, masked: float, q: list[float], median: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = rng.normal(0.3, 0.4, (t, 4, 5)).astype(np.float32)
    v[rng.random(v.shape) < masked] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want, want_med = numpy_order_stats(v, tuple(q), median)
    got, got_med = torch_order_stats(v, tuple(q), median, device="cpu")
    np.testing.assert_array_equal(got, want)
    if median:
        assert got_med is not None and want_med is not None
        np.testing.assert_array_equal(got_med, want_med)
        np.testing.assert_array_equal(got_med, np.nanmedian(v, axis=0))  # numpy's own rule
    else:
        assert got_med is None


def test_the_real_tile_in_torch_equals_the_numpy_tile(slovenia_features: Path, tmp_path: Path) -> None:
    """The 10 NDVI features of the real Slovenia stack (percentiles, seasonal medians, the
    texture around the median) computed with the torch order statistics: the same COG values."""
    from pipeline.core.selection import FeatureSelection
    from pipeline.core.spec import load_spec
    from tiles.engine.run import features_from_stack

    spec = load_spec("elc10")
    sel = FeatureSelection.of(spec, NDVI_FEATURES, "names")
    got = features_from_stack(
        "eolearn_slovenia",
        spec,
        sel,
        2017,
        tmp_path / "torch.tif",
        order_stats=functools.partial(torch_order_stats, device="cpu"),
    )
    with rasterio.open(got) as a, rasterio.open(slovenia_features) as b:
        assert list(a.descriptions) == list(b.descriptions)
        np.testing.assert_array_equal(a.read(), b.read())


def test_devices_are_checked() -> None:
    from pipeline.stages.features import FeaturesRequest

    assert order_stats_on("cpu") is None
    with pytest.raises(EulcError, match=r"`device` 'gpu' is not a device"):
        FeaturesRequest(Path("out"), 2021, files="eolearn_slovenia", device="gpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(EulcError, match=r"`device` cuda was given but torch sees no CUDA GPU"):
            order_stats_on("cuda")
    else:
        assert order_stats_on("cuda") is not None
