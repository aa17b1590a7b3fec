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
