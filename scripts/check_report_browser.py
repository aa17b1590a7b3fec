"""Look at an ``eulc report`` page in a real browser (headless Chromium) and check what a reader sees.

    python scripts/check_report_browser.py out/demo/report/report.html --screenshot report.png

Chromium renders the page at 1400 px wide and saves a full-page screenshot; then:

1. every figure is embedded (``data:`` URIs) and decodes;
2. the rendered DOM holds no raw template or Markdown (``{}``, ``**``, ``## ``);
3. the screenshot shows each Level-1 class the map holds in its legend colour (so the map figure
   was drawn and displayed, not a broken image), and the disagreement black;
4. the page is laid out: content over more than 2,000 px of height, within the 6,000 px window.

It prints one line per check and exits 1 when one fails. Needs a Chromium binary (``chromium``,
``chromium-browser`` or ``google-chrome``; Debian: ``apt-get install chromium``), which CI does
not install: this is the documented manual check of issue #17 (docs/outputs.md).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.assess.compare import DISAGREE_RGB
from pipeline.core.legend import level1_legend

WIDTH_PX, HEIGHT_PX = 1400, 6000  # a window taller than the page: the screenshot holds all of it


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    sys.exit("no Chromium found: install one (Debian: apt-get install chromium)")


def _run(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def main() -> int:
    """Run the checks; 0 when all pass, 1 otherwise."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="report.html from `eulc report` or `eulc demo`")
    ap.add_argument("--screenshot", type=Path, default=Path("report_screenshot.png"))
    args = ap.parse_args()
    if not args.report.is_file() or not (args.report.parent / "metrics.json").is_file():
        sys.exit(f"{args.report}: not an `eulc report` page (it and metrics.json beside it must exist)")
    browser = _browser()
    html = args.report.read_text(encoding="utf-8")
    metrics = json.loads((args.report.parent / "metrics.json").read_text())
    url = args.report.resolve().as_uri()
    ok = True

    def check(name: str, passed: bool, detail: str) -> None:
        nonlocal ok
        ok &= passed
        print(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}")

    srcs = re.findall(r'<img[^>]+src="([^"]+)"', html)
    decoded = 0
    for src in srcs:
        if src.startswith("data:image/png;base64,"):
            try:
                Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
                decoded += 1
            except (OSError, ValueError):
                pass
    check("figures embedded", bool(srcs) and decoded == len(srcs), f"{decoded} of {len(srcs)} <img> are PNG data URIs")
    dom = _run(browser, "--virtual-time-budget=2000", "--dump-dom", url).stdout
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S))
    raw = [t for t in ("{}", "**", "## ") if t in text]
    check("no raw template or Markdown", not raw and len(text) > 1000, f"leftovers {raw or 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        shot = Path(tmp) / "shot.png"
        p = _run(browser, f"--window-size={WIDTH_PX},{HEIGHT_PX}", f"--screenshot={shot}", url)
        check("rendered", shot.is_file(), p.stderr.strip().splitlines()[-1] if not shot.is_file() else str(shot))
        if not shot.is_file():
            return 1
        img = Image.open(shot).convert("RGB")
    arr = np.asarray(img)
    rgb = arr.reshape(-1, 3)
    rows = np.flatnonzero((np.abs(arr.astype(int) - arr[-1, 0].astype(int)).max(2) > 8).any(1))
    height = int(rows[-1]) + 1 if len(rows) else 0  # the last row that is not the page background
    check("laid out", 2000 < height < HEIGHT_PX, f"content {img.width} x {height} px")
    img = img.crop((0, 0, img.width, min(img.height, height + 40)))
    img.save(args.screenshot)
    for c in level1_legend().classes:
        if metrics["per_class"].get(c.name, {}).get("map_pixels", 0) < 50:
            continue
        col = np.array([int(c.colour[i : i + 2], 16) for i in (1, 3, 5)])
        n = int((np.abs(rgb.astype(int) - col).max(1) <= 2).sum())
        check(f"map class {c.name}", n > 200, f"{n} screen px in {c.colour}")
    n_dis = int((np.abs(rgb.astype(int) - np.array(DISAGREE_RGB)).max(1) <= 2).sum())
    check("disagreement drawn", n_dis > 200, f"{n_dis} black screen px")
    print(f"screenshot: {args.screenshot}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
