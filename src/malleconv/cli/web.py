"""``malleconv web``: serve the in-browser denoiser (the repository's ``web/`` folder).

The page runs the model in the browser with onnxruntime-web; this command only serves
files, on localhost by default, with the two headers that make the page cross-origin
isolated (``Cross-Origin-Opener-Policy: same-origin``, ``Cross-Origin-Embedder-Policy:
require-corp``): without them browsers withhold SharedArrayBuffer and the WebAssembly
runtime runs on one thread. Nothing is uploaded; the server only answers GET requests
for the page's own files.

The page is built by ``npm ci --prefix web`` (onnxruntime-web from the lock file, copied
to ``web/vendor/``). The page runs the automatic mode of ``malleconv denoise``: it needs both
models, ``web/models/mallenet-s.onnx`` and ``web/models/mallenet-s-real.onnx``, exported here
when missing or exported from other weights (the files' metadata says), so that the
repository carries no 5 MB copies of weights it already has, and the mode's settings
(:data:`~malleconv.inference.auto.WHITE_MAX_RATIO` and the rest, :func:`auto_settings`) in
``web/models/auto.json``, rewritten whenever they differ from this package's, so that the
Python modules stay their only source. ``--prepare`` does that and exits, leaving a folder
that works as a static site (web/README.md). ``web/`` is not part of the installed package:
run from a checkout (``pip install -e .``) or pass ``--root``.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MODEL = "mallenet-s-real"
# The automatic mode's two models: white noise, and the blind one (camera noise).
MODELS = ("mallenet-s", "mallenet-s-real")
# Files the page cannot run without: the page itself and onnxruntime-web's build.
_BUILT = ("index.html", "src/worker.js", "vendor/ort/ort.wasm.min.mjs")
# Folders of web/ that are tooling, not the site.
_PRIVATE = ("/node_modules/", "/tools/", "/tests/", "/package.json", "/package-lock.json")


def default_root() -> Path:
    """``web/`` of the checkout this package runs from (src/malleconv/cli -> repo)."""
    return Path(__file__).resolve().parents[3] / "web"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "web",
        help="serve the in-browser denoiser on localhost",
        description="Serve the page that denoises photos in the browser (web/), with the "
        "headers that multi-threaded WebAssembly needs. Nothing is uploaded: the model "
        "runs in the page.",
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="the built page folder (default: web/ of this checkout)",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument(
        "--prepare",
        action="store_true",
        help="check the page is built, export both models and write the automatic mode's "
        "settings into it where needed, then exit (the folder is then a static site)",
    )
    p.set_defaults(func=run)


def check_built(root: Path) -> None:
    """Raise FileNotFoundError naming the command that builds what ``root`` lacks."""
    if not (root / "index.html").is_file():
        raise FileNotFoundError(
            f"no page at {root}: the page is the web/ folder of a malleconv checkout; run "
            "from one (pip install -e .) or pass --root"
        )
    missing = [name for name in _BUILT if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the page in {root} is not built ({', '.join(missing)} missing): run "
            f"`npm ci --prefix {root}`"
        )


def _stored_stamp(path: Path) -> tuple[str | None, str | None]:
    """``(weights_sha256, export_format)`` from an exported file's metadata (None where
    missing or unreadable)."""
    try:
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    except Exception:  # no onnx package, or not an ONNX file: treated as stale
        return None, None
    return meta.get("weights_sha256"), meta.get("export_format")


def ensure_model(root: Path, name: str = MODEL) -> Path:
    """``root/models/NAME.onnx``, exported (:func:`malleconv.models.export.export_onnx`)
    when it is missing or was exported from other weights or by another export format
    (read from the file's metadata). Written atomically, so that a page loading meanwhile
    never reads half a file."""
    try:
        from ..models.export import EXPORT_FORMAT, export_onnx, weights_digest
        from ..models.registry import weights_dir
    except ImportError as err:
        raise OSError(f"this malleconv cannot export ONNX models: {err}") from None

    target = root / "models" / f"{name}.onnx"
    weights = weights_dir() / f"{name}.safetensors"
    if target.is_file():
        stamp = _stored_stamp(target)
        if stamp == (weights_digest(weights), str(EXPORT_FORMAT)):
            return target
    print(f"exporting {name} to {target} ...", file=sys.stderr, flush=True)
    try:
        # onnxruntime-web has no blocked CPU layout: the graph written for it.
        export_onnx(name, target, target="web")
    except ImportError as err:  # the onnx package: the ONNX extra
        raise OSError(str(err)) from None
    return target


def auto_settings() -> dict:
    """The automatic mode's settings as the page reads them (``models/auto.json``), taken
    from the Python modules that define them (:mod:`malleconv.inference.auto`,
    :mod:`~malleconv.inference.noise_level`, :mod:`~malleconv.inference.noise_floor`,
    :mod:`malleconv.data.noise`), so that web/src/noise.js decides as
    ``malleconv denoise`` does."""
    from ..data.noise import SIGMA_MAX, SIGMA_MIN
    from ..inference import auto, noise_floor, noise_level, tiling

    return {
        "white_model": MODELS[0],
        "blind_model": MODELS[1],
        "white_max_ratio": float(auto.WHITE_MAX_RATIO),
        "floor_cap": float(auto.FLOOR_CAP),
        "floor_baseline": float(auto.FLOOR_BASELINE),
        "clean_floor": float(auto.CLEAN_FLOOR),
        "min_floor": float(auto.MIN_FLOOR),
        "floor_bound": float(auto.FLOOR_BOUND),
        "bound_ratio": float(auto.BOUND_RATIO),
        "bound_max_fine": float(auto.BOUND_MAX_FINE),
        "half_pass_ratio": float(auto.HALF_PASS_RATIO),
        "sigma_min": float(SIGMA_MIN),
        "sigma_max": float(SIGMA_MAX),
        "mad_to_std": float(noise_level._MAD_TO_STD),
        "floor_percentile": float(noise_floor.FLOOR_PERCENTILE),
        "tile": int(tiling.COMMAND_TILE),
        "tile_overlap": int(tiling.COMMAND_OVERLAP),
        "block": int(noise_floor.BLOCK),
        "coarse_block": int(noise_floor.COARSE_BLOCK),
        "dark": float(noise_floor._DARK),
        "bright": float(noise_floor._BRIGHT),
    }


def ensure_auto(root: Path) -> Path:
    """``root/models/auto.json``: :func:`auto_settings`, rewritten (atomically) when the
    file is missing or holds other values."""
    import json

    from ..io import atomic_write_text

    target = root / "models" / "auto.json"
    settings = auto_settings()
    try:
        if json.loads(target.read_text()) == settings:
            return target
    except (OSError, ValueError):
        pass
    print(f"writing the automatic mode's settings to {target}", file=sys.stderr, flush=True)
    atomic_write_text(target, json.dumps(settings, indent=2) + "\n", overwrite=True)
    return target


def prepare(root: Path) -> None:
    """Everything the page needs besides ``npm ci``: both models (:func:`ensure_model`)
    and the automatic mode's settings (:func:`ensure_auto`)."""
    for name in MODELS:
        ensure_model(root, name)
    ensure_auto(root)


class PageHandler(SimpleHTTPRequestHandler):
    """Static files with the cross-origin isolation headers and the MIME types of the page."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".onnx": "application/octet-stream",
        ".webp": "image/webp",
        ".map": "application/json",
    }
    quiet = True

    def end_headers(self) -> None:
        # SharedArrayBuffer (WebAssembly threads) only in cross-origin isolated pages.
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        # A re-exported model or a rebuilt page must not be served stale from the cache.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def send_head(self):
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if any(path.startswith(p) for p in _PRIVATE):
            self.send_error(404, "not part of the page")
            return None
        return super().send_head()

    def do_POST(self) -> None:  # nothing is uploaded, ever
        self.send_error(405, "this server only serves the page")

    def log_message(self, format: str, *args) -> None:
        if not self.quiet:
            super().log_message(format, *args)


def make_server(root: Path, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
    """A ``ThreadingHTTPServer`` serving ``root`` with :class:`PageHandler` (not started);
    its address is ``server.server_address``."""
    handler = functools.partial(
        type("Handler", (PageHandler,), {"quiet": not verbose}), directory=str(root)
    )
    return ThreadingHTTPServer((host, port), handler)


def serve_in_background(root: Path, host: str = "127.0.0.1", port: int = 0, verbose=False):
    """Start :func:`make_server` on a daemon thread; returns ``(server, url)``. Call
    ``server.shutdown()`` to stop it (tests, benchmarks/web_speed.py, screenshots)."""
    import threading

    server = make_server(root, host, port, verbose)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/"


def drive(spec: dict, root: Path | None = None, timeout: float = 600.0) -> dict:
    """Run ``web/tests/drive.mjs`` (headless Chromium through playwright-core) on ``spec``
    and return what it printed (see that file). Raises RuntimeError with the driver's
    output when it fails."""
    import json

    script = (root or default_root()) / "tests" / "drive.mjs"
    done = subprocess.run(
        ["node", str(script), "-"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = None
    if done.returncode != 0 or result is None:
        raise RuntimeError(
            f"the browser driver failed (exit {done.returncode}): "
            f"{(result or {}).get('error') or done.stderr.strip()[-2000:]}\n"
            f"log: {(result or {}).get('log')}"
        )
    return result


def run(args: argparse.Namespace) -> int:
    root = (args.root or default_root()).resolve()
    check_built(root)
    prepare(root)
    if args.prepare:
        print(f"{root} is ready to be served as a static site (web/README.md)")
        return 0
    server = make_server(root, args.host, args.port, args.verbose)
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    # The first line of output is the address (tests and scripts read it).
    print(f"serving {url} from {root} (Ctrl+C stops)", flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
