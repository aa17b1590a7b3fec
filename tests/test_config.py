from pathlib import Path

import pytest

from pipeline.core.config import ENV_VAR, data_dir
from pipeline.core.errors import DataDirError


def test_missing_data_dir_says_how_to_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(DataDirError) as e:
        data_dir()
    assert "EULC_DATA" in str(e.value) and str(tmp_path / "nope") in str(e.value)


def test_required_subpath_is_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert data_dir() == tmp_path.resolve()
    with pytest.raises(DataDirError, match="missing.txt"):
        data_dir(("missing.txt",))


def test_default_points_at_shared_data(data: Path) -> None:
    assert (data / "SOURCES.md").is_file()


def test_default_is_beside_the_checkout_whatever_the_current_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without EULC_DATA the data is ../shared/data beside the checkout, from any folder (a
    cwd-relative default broke every test that changes folder when EULC_DATA was not exported)."""
    from pipeline.core.config import data_dir_setting

    checkout = Path(__file__).resolve().parents[1]
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_dir() == (checkout.parent / "shared" / "data").resolve()
    assert data_dir_setting()[1] == f"beside the checkout {checkout}"


def test_an_installed_package_without_eulc_data_says_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.core.config as config

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(config, "checkout_root", lambda: None)
    with pytest.raises(DataDirError, match="installed outside a checkout.*Set EULC_DATA"):
        data_dir()
