"""Earth Engine sessions: an offline one (real API signatures, no network) and a live one.

Offline mode follows ``ee.apitestcase.ApiTestCase.InitializeApi`` (earthengine-api ships
``ee/apitestcase.py`` and ``ee/tests/algorithms.json``; DESIGN.md §3): ``ee.Reset()``, the
algorithm list from the installed package, stubbed ``_install_cloud_api_resource``,
``computeValue`` and data-catalogue lookups, then ``ee.Initialize(None, '', project=...)``.
Expression graphs then build and serialize exactly as online, and a misspelt method or
argument fails as it would online. Nothing is sent anywhere.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ee
from ee import apitestcase

from pipeline.core.errors import EulcError

_PATCHED = ("getAlgorithms", "computeValue", "_install_cloud_api_resource")


@contextlib.contextmanager
def offline(project: str = "offline-project") -> Iterator[None]:
    """Initialise ``ee`` offline for the duration of the block, then restore it.

    Raises:
        EulcError: the installed earthengine-api lacks its test fixture (algorithms.json).
    """
    saved: dict[str, Any] = {n: getattr(ee.data, n) for n in _PATCHED}
    saved_stac = ee.deprecation._FetchDataCatalogStac  # noqa: SLF001
    try:
        ee.Reset()
        ee.data._install_cloud_api_resource = lambda: None  # noqa: SLF001
        ee.data.getAlgorithms = apitestcase.GetAlgorithms
        ee.data.computeValue = lambda obj: {"value": "offline"}
        ee.deprecation._FetchDataCatalogStac = lambda: {}  # noqa: SLF001
        try:
            ee.Initialize(None, "", project=project)
        except FileNotFoundError as e:
            raise EulcError(
                f"earthengine-api has no algorithms.json fixture ({e})",
                "Install earthengine-api >= 1.0 (pip install -e '.[gee]')",
            ) from None
        yield
    finally:
        for n, f in saved.items():
            setattr(ee.data, n, f)
        ee.deprecation._FetchDataCatalogStac = saved_stac  # noqa: SLF001
        ee.Reset()


def credentials_path() -> Path | None:
    """Where Earth Engine credentials are found locally, or None (no network is used).

    Checks ``GOOGLE_APPLICATION_CREDENTIALS`` (a service-account key) and the file written by
    ``earthengine authenticate`` (``~/.config/earthengine/credentials``).
    """
    sa = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if sa and Path(sa).is_file():
        return Path(sa)
    p = Path(ee.oauth.get_credentials_path())
    return p if p.is_file() else None


def initialize_live(project: str | None) -> None:
    """Initialise ``ee`` against the live service for ``--start``.

    Raises:
        EulcError: no credentials are found locally, or no Cloud project is given, or the
            service refuses them. Checked before anything is submitted.
    """
    creds = credentials_path()
    if creds is None:
        raise EulcError(
            "no Earth Engine credentials found (neither GOOGLE_APPLICATION_CREDENTIALS nor "
            f"{ee.oauth.get_credentials_path()})",
            "Run `earthengine authenticate` (or set GOOGLE_APPLICATION_CREDENTIALS to a service "
            "account key), then pass `project` YOUR_CLOUD_PROJECT",
        )
    if not project:
        raise EulcError(
            "no Google Cloud project given for Earth Engine",
            "Pass `project` YOUR_CLOUD_PROJECT (a project registered for Earth Engine)",
        )
    try:
        ee.Initialize(project=project)
    except Exception as e:  # ee raises EEException or google.auth errors
        raise EulcError(
            f"Earth Engine refused the credentials in {creds} ({e})",
            "Re-run `earthengine authenticate` or check the project",
        ) from None
