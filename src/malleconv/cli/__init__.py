"""The ``malleconv`` command: ``info``, ``train``, ``eval``, ``denoise``, ``bench``."""

from .main import main

__all__ = ["main"]
