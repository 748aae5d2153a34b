"""Writes docs/figures/web-page.png: the in-browser denoiser (web/) after denoising the
bundled noisy photo (tests/data/web-noisy-256.png), in headless Chromium.

    .venv/bin/python scripts/web_screenshot.py [--chromium /usr/bin/chromium]

Needs the page built (``npm ci --prefix web``); the models are exported if missing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from malleconv.cli import web

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "tests" / "data" / "web-noisy-256.png"
OUT = ROOT / "docs" / "figures" / "web-page.png"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chromium", default=os.environ.get("MALLECONV_CHROMIUM", "/usr/bin/chromium"))
    args = ap.parse_args()
    root = web.default_root()
    web.check_built(root)
    web.prepare(root)
    server, url = web.serve_in_background(root)
    try:
        steps = [
            {"open": str(PHOTO)},
            {"waitRuns": 1},
            # Split a little left of centre, so that the parrot's head shows denoised.
            {"eval": "(s => { s.value = '40'; s.dispatchEvent(new Event('input')); })"
             "(document.getElementById('split'))"},
            {"screenshot": str(OUT), "fullPage": True},
        ]  # fmt: skip
        spec = {"url": url, "chromium": args.chromium, "viewport": [900, 640], "steps": steps}
        result = web.drive(spec, root)
    finally:
        server.shutdown()
        server.server_close()
    run = result["runs"][0]
    print(f"wrote {OUT.relative_to(ROOT)} ({run['seconds']:.2f} s in the page, {run['backend']})")


if __name__ == "__main__":
    main()
