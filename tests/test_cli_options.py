"""One meaning per option name across the ``eulc`` commands (issue #17).

An option name used by several commands must have the same help text and the same default in
each of them (they are declared once, in ``pipeline.app.cli_common``), unless it is listed in
``VARIANTS`` with the reason its commands differ.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
import typer

from pipeline.app.cli import app
from pipeline.stages.pretrained import models_dir, resolve_bundle

pytestmark = pytest.mark.fast

VARIANTS = {
    "--out": "what each command writes differs (a table, a bundle, a folder of maps, a JSON)",
    "--spec": "the fallback is the spec of what the command reads (the table's; else elc10, or "
    "bridge-lc-196 for the Earth Engine exports)",
    "--epochs": "the demo's short schedule (10) against the paper's (500)",
    "--lr": "the demo's short schedule (1e-3) against the paper's (1e-4)",
    "--bundle": "map needs one (default: the shipped elc10-l1); evaluate, report and drift take one optionally",
    "--year": "the survey year of a table, the map year of features and maps",
    "--device": "the network's device for train, evaluate and map (auto: CUDA when present); for features "
    "where the percentiles are sorted, cpu by default (numpy, the reference values)",
    "--points": "points to sample features at (sample, gee export-table) or reference points (report)",
    "--seeds": "Random-Forest seeds of the importance (select) or model seeds (evaluate)",
    "--adapt-priors": "extra <model>+em rows in an evaluation, or the adapted map itself",
    "--overwrite": "what may be replaced: a bundle (train) or a map run folder's own outputs (map)",
}


def _options() -> dict[str, list[tuple[str, Any, str]]]:
    """Option name → [(command path, default, help)] over every command and sub-command."""
    found: dict[str, list[tuple[str, Any, str]]] = defaultdict(list)

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
            return
        for p in cmd.params:
            if type(p).__name__.endswith("Option"):
                for opt in p.opts:  # --no-X follows --X
                    found[opt].append((" ".join(path), p.default, p.help or ""))

    walk(typer.main.get_command(app), [])
    return found


def test_an_option_name_has_one_meaning_across_commands() -> None:
    opts = _options()
    assert {"--features", "--level", "--processing-level", "--mosaic", "--device", "--crosswalk"} <= set(opts)
    clashes = {}
    for name, uses in opts.items():
        if len(uses) < 2 or name in VARIANTS:
            continue
        if len({h for _, _, h in uses}) > 1 or len({repr(d) for _, d, _ in uses}) > 1:
            clashes[name] = uses
    assert not clashes, f"same option name, different meaning or default: {clashes}"
    # the names that used to mean two things now mean one
    assert all("level1" in h for _, _, h in opts["--level"]), opts["--level"]
    assert all("selection" in h for _, _, h in opts["--features"]), opts["--features"]
    assert [c for c, _, _ in opts["--features"]] == [
        "train",
        "evaluate",
        "features",
        "gee export-table",
        "gee export-tiles",
        "openeo export-tiles",
        "openeo export-table",
    ]


def test_variants_are_still_needed() -> None:
    """An entry of VARIANTS whose commands have come to agree is stale."""
    opts = _options()
    for name in VARIANTS:
        uses = opts[name]
        assert len(uses) > 1 and (len({h for _, _, h in uses}) > 1 or len({repr(d) for _, d, _ in uses}) > 1), name


def test_map_defaults_to_the_installed_bundle(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--bundle elc10-l1`` (map's default) is the shipped bundle from any working folder; a
    path that exists wins over a shipped name; an unknown name is passed on for the loader's error.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EULC_MODELS", raising=False)
    default = next(d for cmd, d, _ in _options()["--bundle"] if cmd == "map")
    assert default == "elc10-l1"
    assert resolve_bundle(default) == models_dir() / "elc10-l1"
    assert (resolve_bundle(default) / "bundle.json").is_file()
    (tmp_path / "elc10-l1").mkdir()  # a folder of that name here is what the user means
    assert resolve_bundle("elc10-l1") == tmp_path.joinpath("elc10-l1").relative_to(tmp_path)
    assert resolve_bundle("no-such-bundle") == type(tmp_path)("no-such-bundle")


def test_help_shows_no_value_type_for_a_flag() -> None:
    """`<bool>` beside a flag read as a value to type (`--ood true`, issue #27): no command's help
    shows it, while options that take a value keep their type."""
    from typer.testing import CliRunner

    runner = CliRunner()
    seen = []

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
            return
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
        assert res.exit_code == 0, (path, res.output)
        assert "<bool>" not in res.output, path
        seen.append(res.output)

    walk(typer.main.get_command(app), [])
    assert len(seen) >= 15 and any("<int>" in h for h in seen) and any("--ood" in h for h in seen)
