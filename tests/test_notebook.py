"""``docs/quickstart.ipynb`` runs end to end (issue #17): executed here with nbclient on the
package's demo data, without ``EULC_DATA``, in a temporary folder.

Checked: every cell runs; the class and confidence COGs it writes are valid COGs; the report's
overall agreement is the CLI's; the map cell displays a geemap widget; and the local tile
server renders the class COG in the legend's colours (at least two classes on the centre tile).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbclient
import nbformat
import pytest
from rio_cogeo.cogeo import cog_validate

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "quickstart.ipynb"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[nbformat.NotebookNode, Path]:
    work = tmp_path_factory.mktemp("quickstart")
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    saved = os.environ.pop("EULC_DATA", None)  # the kernel inherits the environment: no shared data
    try:
        nbclient.NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}
        ).execute()
    finally:
        if saved is not None:
            os.environ["EULC_DATA"] = saved
    return nb, work


def _outputs(nb: nbformat.NotebookNode, needle: str) -> list[dict]:
    cells = [c for c in nb.cells if c.cell_type == "code" and needle in c.source]
    assert len(cells) == 1, needle
    return list(cells[0].outputs)


def test_the_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code")


def test_the_quickstart_runs_on_the_demo_data(executed: tuple[nbformat.NotebookNode, Path]) -> None:
    nb, work = executed
    out = work / "quickstart_out"
    for name in ("eolearn_slovenia_demo_2017_class.tif", "eolearn_slovenia_demo_2017_confidence.tif"):
        ok, errors, _ = cog_validate(str(out / "maps" / name))
        assert ok, errors
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["overall_agreement"] > 0.85  # the demo's figure (README)
    printed = "".join(o.get("text", "") for o in _outputs(nb, "eulc.report("))
    assert f"overall agreement {metrics['overall_agreement']:.3f}" in printed
    assert (out / "report" / "report.html").stat().st_size > 100_000  # figures embedded


def test_the_map_is_shown_on_a_geemap_map_in_legend_colours(executed: tuple[nbformat.NotebookNode, Path]) -> None:
    nb, _ = executed
    widget = "application/vnd.jupyter.widget-view+json"
    widgets = [o for o in _outputs(nb, "geemap.Map(") if widget in o.get("data", {})]
    assert widgets and "Map(" in widgets[-1]["data"]["text/plain"]
    (table,) = [
        o for o in _outputs(nb, "TileClient(") if "share of the tile" in o.get("data", {}).get("text/plain", "")
    ]
    shares = {
        line.rsplit(maxsplit=1)[0]: float(line.rsplit(maxsplit=1)[1])
        for line in table["data"]["text/plain"].splitlines()[1:]
    }
    # the tile is the map: mostly woodland and grassland, as the demo's class counts
    assert shares["Woodland/Shrubland"] > 0.5 and shares["Grassland"] > 0.05, shares
