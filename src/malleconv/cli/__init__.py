"""The ``malleconv`` command: ``info``, ``denoise``, ``demo``, ``train``, ``eval``."""

from .main import main

__all__ = ["main"]
