"""Generate pipeline/specs/bridge-lc-196.yaml (run on purpose: python scripts/make_bridge_lc_196_spec.py).

The facts come from ../shared/FEATURES.md (paper §2.1, Table 3); this script only lays them out
with the naming rule {sensor}_{variable}_{stat}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

SHIPPED = Path(__file__).resolve().parents[1] / "pipeline" / "specs" / "bridge-lc-196.yaml"
"""The generated spec in the package."""

S2_BANDS = ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"]
# name: (expression on reflectance 0-1, int16 scale, source of the definition)
S2_INDICES = {
    "blfei": (
        "((B3 + B4 + B12) / 3 - B11) / ((B3 + B4 + B12) / 3 + B11)",
        10000,
        "Bouhennache et al. 2019 (original; the paper's print is garbled)",
    ),
    "bsi": ("((B11 + B4) - (B8 + B2)) / ((B11 + B4) + (B8 + B2))", 10000, "Rikimaru et al. 2002"),
    "direswir": ("B4 - B11", 10000, "Jacques et al. 2014"),
    "evi2": (
        "2.5 * (B8 - B4) / (B8 + 2.4 * B4 + 1)",
        10000,
        "Jiang et al. 2008 original (the paper prints 2.4*(B8-B4)/(B8+B4+1))",
    ),
    "gndvi": ("(B8 - B3) / (B8 + B3)", 10000, "Gitelson et al. 1996"),
    "lai": (
        "3.618 * (2.5 * (B8 - B4) / (B8 + 6 * B4 - 7.5 * B2 + 1)) - 0.118",
        1000,
        "Boegh et al. 2002 (the paper prints -0.11)",
    ),
    "laig": ("5.405 * (B8A - B5) / (B8A + B5) - 0.114", 1000, "Pasqualotto et al. 2019"),
    "lcci": ("B7 / B5", 1000, "Wulf & Stuhler 2015"),
    "mndwi": ("(B3 - B11) / (B3 + B11)", 10000, "Xu 2006"),
    "msavi": ("0.5 * (2 * B8 + 1 - sqrt((2 * B8 + 1) ** 2 - 8 * (B8 - B4)))", 10000, "Qi et al. 1994"),
    "ndbi": ("(B11 - B8) / (B11 + B8)", 10000, "Zha et al. 2003"),
    "ndti": ("(B11 - B12) / (B11 + B12)", 10000, "Van Deventer et al. 1997"),
    "ndvi": ("(B8 - B4) / (B8 + B4)", 10000, "Kriegler et al. 1969"),
    "ndwi": ("(B8 - B11) / (B8 + B11)", 10000, "Gao 1996 NIR-SWIR form, as printed"),
    "savi": ("1.5 * (B8 - B4) / (B8 + B4 + 0.5)", 10000, "Huete 1988"),
    "srnirr": ("B8 / B4", 1000, "Blackburn 1998"),
}
# S1 variables on linear sigma0 (VV, VH after the 30 m focal median):
# name: (expression, int16 scale, unit note)
S1_VARIABLES = {
    "vv": ("10 * log10(VV)", 100, "sigma0 VV in dB"),
    "vh": ("10 * log10(VH)", 100, "sigma0 VH in dB"),
    "ratio": ("VV / VH", 1000, "VV/VH, ratio of linear sigma0"),
    "diff": ("10 * log10(VV) - 10 * log10(VH)", 100, "VV - VH in dB (the usual 'difference')"),
    "rvi": ("4 * VH / (VV + VH)", 1000, "radar vegetation index, linear sigma0"),
    "ndpi": ("(VV - VH) / (VV + VH)", 10000, "normalized difference polarization index, linear"),
    "dpsvim": ("(VV + VH) / sqrt(2)", 1000, "DPSVIm as printed in the paper, linear sigma0"),
}
PCT = (5, 50, 98)


def main(out: Path | None = None) -> None:
    """Write the spec YAML."""
    feats: list[dict] = []
    for b in S2_BANDS:
        for p in PCT:
            feats.append(
                {
                    "name": f"s2_{b.lower().replace('b', 'b0', 1) if len(b) == 2 else b.lower()}_p{p}",
                    "sensor": "s2",
                    "source": b,
                    "stat": f"p{p}",
                    "scale": 10000,
                    "description": f"annual {p}th percentile of {b} surface reflectance",
                }
            )
    for name, (_, scale, src) in S2_INDICES.items():
        for p in PCT:
            feats.append(
                {
                    "name": f"s2_{name}_p{p}",
                    "sensor": "s2",
                    "source": name,
                    "stat": f"p{p}",
                    "scale": scale,
                    "description": f"annual {p}th percentile of {name.upper()} ({src})",
                }
            )
    for name, (_, scale, note) in S1_VARIABLES.items():
        for m in range(1, 13):
            feats.append(
                {
                    "name": f"s1_{name}_m{m:02d}",
                    "sensor": "s1",
                    "source": name,
                    "stat": "median",
                    "window": {"months": [m]},
                    "scale": scale,
                    "description": f"median of {note} in month {m}; masked when no acquisition",
                }
            )
        for p in PCT:
            feats.append(
                {
                    "name": f"s1_{name}_p{p}",
                    "sensor": "s1",
                    "source": name,
                    "stat": f"p{p}",
                    "scale": scale,
                    "description": f"annual {p}th percentile of {note}",
                }
            )
    for m in range(1, 13):
        feats.append(
            {
                "name": f"lst_m{m:02d}",
                "sensor": "lst",
                "source": "LST",
                "stat": "median",
                "window": {"months": [m]},
                "scale": 10,
                "description": f"MOD21C3 LST_Day of month {m} in kelvin (x10 stored)",
            }
        )
    feats.append(
        {
            "name": "dem_elevation",
            "sensor": "dem",
            "source": "elevation",
            "stat": "value",
            "scale": 1,
            "description": "elevation in metres",
        }
    )
    spec = {
        "name": "bridge-lc-196",
        "version": 1,
        "year": 2022,
        "export_dtype": "int16",
        "description": (
            "The 196 BRIDGE-LC features (Ghassemi et al. 2025, arXiv 2504.12368, section 2.1; "
            "FEATURES.md): Sentinel-2 L2A 26 variables x p5/p50/p98 (78), Sentinel-1 7 variables x "
            "(12 monthly medians + p5/p50/p98) (105), MOD21C3 monthly LST (12), DEM (1). "
            "Stored value = physical x scale, rounded to int16 on export."
        ),
        "sensors": {
            "s2": {
                "kind": "s2",
                "collection": "COPERNICUS/S2_SR_HARMONIZED",
                "level": "L2A",
                "units": "reflectance",
                "dn_per_unit": 10000,
                "available_from": "2017-03-28",
                "scene_cloud_max_pct": 50,
                "cloud_probability": {"op": ">", "value": 75},
                "cloud_probability_collection": "COPERNICUS/S2_CLOUD_PROBABILITY",
                "scl_mask": [1, 9, 10, 11],
            },
            "s1": {
                "kind": "s1",
                "collection": "COPERNICUS/S1_GRD_FLOAT",
                "level": "GRD",
                "units": "linear",
                "available_from": "2014-10-03",
                "instrument_mode": "IW",
                "polarisations": ["VV", "VH"],
                "focal_median_radius_m": 30,
            },
            "lst": {
                "kind": "lst",
                "collection": "MODIS/061/MOD21C3",
                "units": "K",
                "dn_per_unit": 50,
                "bands": {"LST": "LST_Day"},
                "available_from": "2000-02-01",
            },
            "dem": {
                "kind": "dem",
                "collection": "projects/sat-io/open-datasets/ASTER/GDEM",
                "units": "m",
                "bands": {"elevation": "b1"},
            },
        },
        "indices": {**{k: v[0] for k, v in S2_INDICES.items()}, **{k: v[0] for k, v in S1_VARIABLES.items()}},
        "features": feats,
    }
    out = out or SHIPPED
    header = (
        "# GENERATED by scripts/make_bridge_lc_196_spec.py from ../shared/FEATURES.md; edit the script.\n"
        "# S1 units: VV, VH and VV-VH in dB (10*log10 of linear sigma0); VV/VH, RVI, NDPI and DPSVIm\n"
        "# on linear sigma0 (ratios and normalized differences are defined on power, not on dB).\n"
        "# DEM: ASTER GDEM v3 from the GEE community catalogue (band b1); alternatives:\n"
        "# NASA/NASADEM_HGT/001 (is_image, band elevation), USGS/SRTMGL1_003 (is_image, elevation),\n"
        "# COPERNICUS/DEM/GLO30 (collection, band DEM). Override with `eulc gee ... --dem-asset`.\n"
    )
    out.write_text(header + yaml.safe_dump(spec, sort_keys=False, width=120))
    print(f"wrote {out} with {len(feats)} features")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=SHIPPED, help="where to write (default: the shipped spec)")
    main(ap.parse_args().out)
