"""Command-line options shared by the CLI, the benchmarks and the scripts."""

from __future__ import annotations

import argparse

from malleconv.data.camera_noise import CameraNoiseRanges


class _CameraNoiseAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        try:
            ranges = CameraNoiseRanges().with_settings(values)
        except ValueError as err:
            parser.error(f"{option_string}: {err}")
        setattr(namespace, self.dest, ranges)


def add_camera_noise_option(parser: argparse.ArgumentParser, example: str) -> None:
    """Add ``--camera-noise NAME=VALUE ...``: camera-noise ranges other than the defaults,
    each read as ``--set data.camera_noise.NAME=VALUE`` reads it. After parsing,
    ``args.camera_noise`` is a :class:`CameraNoiseRanges` (the defaults when not given);
    a bad name or value exits with a usage error that names the option."""
    parser.add_argument(
        "--camera-noise",
        nargs="+",
        default=CameraNoiseRanges(),
        action=_CameraNoiseAction,
        metavar="NAME=VALUE",
        help="camera-noise ranges other than the defaults, as in data.camera_noise "
        f"(e.g. {example})",
    )
