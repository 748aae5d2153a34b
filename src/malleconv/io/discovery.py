"""Finding image files: expanding files, folders and glob patterns into image paths."""

from __future__ import annotations

import errno
import glob
import os
from collections.abc import Sequence
from pathlib import Path

from malleconv.io.formats import IMAGE_EXTENSIONS

__all__ = ["is_image_file", "list_images"]


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` has an image extension (case-insensitive) and is not a hidden file.

    Hidden names (leading dot) are excluded because they are temporary files of
    :func:`~malleconv.io.write.write_image` or macOS resource forks (``._name.png``), not images.
    """
    name = Path(path).name
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _has_glob_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _has_glob_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _images_in_folder(folder: Path, root: Path, recursive: bool) -> list[tuple[Path, Path]]:
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for p in candidates:
        rel = p.relative_to(root)
        if is_image_file(p) and not _is_hidden(p.relative_to(folder)) and p.is_file():
            found.append((p, rel))
    return found


def list_images(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], recursive: bool = False
) -> list[tuple[Path, Path]]:
    """Expand files, folders and glob patterns into ``(file, relative path)`` pairs.

    * A file is returned with its name as relative path (hidden or not).
    * A folder yields its image files (:func:`is_image_file`), relative to the folder;
      subfolders are searched when ``recursive`` is True. Hidden files and folders are skipped.
    * A glob pattern (``*``, ``?``, ``[``) yields matching image files and the images of
      matching folders, relative to the pattern's fixed leading folders (``data/*/x*.png`` ->
      relative to ``data``); ``**`` spans folders when ``recursive`` is True.

    Each argument's pairs are sorted by relative path; arguments keep their order and a file
    reached twice is listed once.

    Args:
        paths: Files, folders or patterns (a single one is accepted too).
        recursive: Search subfolders of folders, and let ``**`` match across folders.

    Returns:
        List of ``(file path, path relative to its root)``.

    Raises:
        FileNotFoundError: a path does not exist, or a pattern matches nothing.
        ValueError: a folder (or a pattern) holds no image file, or a file given explicitly
            does not have an image extension.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    result: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for item in paths:
        text = os.fspath(item)
        path = Path(text)
        if path.is_dir():
            found = _images_in_folder(path, path, recursive)
            if not found:
                hint = ""
                if not recursive and any(p.is_dir() for p in path.iterdir()):
                    hint = " (it has subfolders: use recursive=True to search them)"
                raise ValueError(f"{path}: folder holds no image file{hint}")
        elif path.is_file():
            # Named on its own, a hidden file is what the user asked for: only folders and
            # patterns skip hidden names.
            if Path(path.name).suffix.lower() not in IMAGE_EXTENSIONS:
                raise ValueError(
                    f"{path}: not an image file (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})"
                )
            found = [(path, Path(path.name))]
        elif _has_glob_magic(text):
            root = _glob_root(text)
            matches = sorted(glob.glob(text, recursive=recursive))
            if not matches:
                raise FileNotFoundError(errno.ENOENT, "no file matches the pattern", text)
            found = []
            for m in map(Path, matches):
                if m.is_dir():
                    found.extend(_images_in_folder(m, root, recursive))
                elif is_image_file(m) and m.is_file():
                    found.append((m, m.relative_to(root)))
            if not found:
                raise ValueError(f"{text}: pattern matches no image file")
        else:
            raise FileNotFoundError(errno.ENOENT, "no such file or folder", text)
        found.sort(key=lambda pair: pair[1].as_posix())
        for file, rel in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                result.append((file, rel))
    return result
