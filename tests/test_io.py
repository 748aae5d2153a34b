"""Tests for malleconv.io: image reading/writing, conversions and file discovery."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image as PILImage
from PIL import ImageOps

from malleconv.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    atomic_write_text,
    convert_channels,
    from_float,
    is_image_file,
    list_images,
    read_image,
    rgb_to_gray,
    to_float,
    write_image,
)
from malleconv.io.read import _apply_orientation

H, W = 32, 48


def _rgb(seed: int = 0, dtype=np.uint8, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    return rng.integers(0, top + 1, size=(H, W, channels), dtype=dtype)


def _quadrants() -> np.ndarray:
    """A smooth RGB image with four distinct coloured quadrants (survives JPEG)."""
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 2, : W // 2] = (255, 0, 0)
    img[: H // 2, W // 2 :] = (0, 255, 0)
    img[H // 2 :, : W // 2] = (0, 0, 255)
    img[H // 2 :, W // 2 :] = (255, 255, 255)
    return img


def _files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------
# Reading and writing


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_16bit_round_trip(tmp_path, channels):
    pixels = _rgb(1, np.uint16, channels)
    pixels[:4] = np.arange(W, dtype=np.uint16)[None, :, None] * 1000  # smooth rows: other filters
    path = write_image(tmp_path / "img16.png", pixels, icc_profile=b"fake icc")
    image = read_image(path)
    expected = pixels[:, :, 0] if channels == 1 else pixels
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, expected)
    assert image.icc_profile == b"fake icc"
    assert image.bit_depth == 16
    assert image.path == path


def test_png_16bit_gray_written_by_pillow(tmp_path):
    values = (np.arange(H * W, dtype=np.uint32).reshape(H, W) * 41 % 65536).astype(np.uint16)
    PILImage.fromarray(values).save(tmp_path / "gray16.png")
    image = read_image(tmp_path / "gray16.png")
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, values)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_tiff_16bit_round_trip(tmp_path, channels):
    pixels = _rgb(2, np.uint16, channels)
    write_image(tmp_path / "img.tif", pixels, icc_profile=b"icc")
    image = read_image(tmp_path / "img.tif")
    np.testing.assert_array_equal(image.pixels, pixels[:, :, 0] if channels == 1 else pixels)
    assert image.icc_profile == b"icc"


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff", ".webp"])
def test_lossless_8bit_round_trip(tmp_path, ext):
    pixels = _rgb(3)
    write_image(tmp_path / f"img{ext}", pixels, quality=100)
    np.testing.assert_array_equal(read_image(tmp_path / f"img{ext}").pixels, pixels)


def test_rgba_and_gray_alpha_png(tmp_path):
    rgba = _rgb(4, channels=4)
    la = _rgb(5, channels=2)
    write_image(tmp_path / "rgba.png", rgba)
    write_image(tmp_path / "la.png", la)
    read_rgba = read_image(tmp_path / "rgba.png")
    read_la = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(read_rgba.pixels, rgba)
    np.testing.assert_array_equal(read_la.pixels, la)
    assert read_rgba.has_alpha and read_la.has_alpha and read_la.channels == 2


def test_gray_png(tmp_path):
    gray = _rgb(6)[:, :, 0]
    write_image(tmp_path / "gray.png", gray[:, :, None])  # H x W x 1 is accepted
    image = read_image(tmp_path / "gray.png")
    assert image.pixels.shape == (H, W) and image.channels == 1
    np.testing.assert_array_equal(image.pixels, gray)


def test_palette_images(tmp_path):
    rgb = _quadrants()
    pal = PILImage.fromarray(rgb).quantize(colors=4)
    pal.save(tmp_path / "pal.png")
    image = read_image(tmp_path / "pal.png")
    assert image.pixels.shape == (H, W, 3)
    np.testing.assert_array_equal(image.pixels, rgb)

    pal.save(tmp_path / "pal_t.png", transparency=0)
    transparent = read_image(tmp_path / "pal_t.png")
    assert transparent.pixels.shape == (H, W, 4)
    index = np.array(pal)
    np.testing.assert_array_equal(transparent.pixels[:, :, 3] == 0, index == 0)


def test_bilevel_cmyk_and_int_modes(tmp_path):
    bits = _rgb(7)[:, :, 0] > 127
    PILImage.fromarray(bits).save(tmp_path / "bits.png")
    np.testing.assert_array_equal(read_image(tmp_path / "bits.png").pixels, bits * 255)

    PILImage.fromarray(_quadrants()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    cmyk = read_image(tmp_path / "cmyk.jpg")
    assert cmyk.pixels.shape == (H, W, 3) and cmyk.pixels.dtype == np.uint8
    assert np.abs(cmyk.pixels.astype(int) - _quadrants()).mean() < 8

    values = np.full((H, W), 40000, np.int32)
    mode_i = PILImage.fromarray(values)
    assert mode_i.mode == "I"
    mode_i.save(tmp_path / "int.tif")
    image = read_image(tmp_path / "int.tif")
    assert image.pixels.dtype == np.uint16
    np.testing.assert_array_equal(image.pixels, values)


def test_tiff_variants(tmp_path):
    gray = _rgb(14)[:, :, 0]
    tifffile.imwrite(tmp_path / "white.tif", gray, photometric="miniswhite")
    np.testing.assert_array_equal(read_image(tmp_path / "white.tif").pixels, 255 - gray)

    planar = _rgb(15, np.uint16).transpose(2, 0, 1)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(tmp_path / "planar.tif").pixels, _rgb(15, np.uint16))

    floats = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    tifffile.imwrite(tmp_path / "float.tif", floats)
    image = read_image(tmp_path / "float.tif")
    assert image.pixels.dtype == np.uint16
    np.testing.assert_allclose(image.pixels / 65535, floats, atol=1e-5)


def test_jpeg_exif_orientation(tmp_path):
    exif = PILImage.Exif()
    exif[0x0112] = 6  # displayed after a 90 degree clockwise rotation
    PILImage.fromarray(_quadrants()).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "rot.jpg")
    assert image.pixels.shape == (W, H, 3)
    expected = np.rot90(_quadrants(), -1)
    assert np.abs(image.pixels.astype(int) - expected).mean() < 8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow_and_tiff(tmp_path, orientation):
    pixels = _rgb(8)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    PILImage.fromarray(pixels).save(tmp_path / "o.png", exif=exif)
    reference = np.array(ImageOps.exif_transpose(PILImage.open(tmp_path / "o.png")))

    np.testing.assert_array_equal(_apply_orientation(pixels, orientation), reference)
    np.testing.assert_array_equal(read_image(tmp_path / "o.png").pixels, reference)
    # TIFF goes through tifffile and the numpy implementation of the orientation tag.
    tifffile.imwrite(
        tmp_path / "o.tif", pixels, photometric="rgb", extratags=[(274, "H", 1, orientation)]
    )
    np.testing.assert_array_equal(read_image(tmp_path / "o.tif").pixels, reference)


def test_jpeg_write_drops_alpha_and_16bit(tmp_path):
    rgba16 = np.zeros((H, W, 4), np.uint16)
    rgba16[..., :3] = _quadrants().astype(np.uint16) * 257
    with pytest.warns(UserWarning, match="alpha"):
        write_image(tmp_path / "x.jpg", rgba16)
    image = read_image(tmp_path / "x.jpg")
    assert image.pixels.dtype == np.uint8 and image.pixels.shape == (H, W, 3)
    assert np.abs(image.pixels.astype(int) - _quadrants()).mean() < 4


def test_16bit_to_8bit_formats_round(tmp_path):
    values = np.array([[0, 128, 129, 257, 385, 386, 65535]], np.uint16)
    write_image(tmp_path / "r.bmp", values)
    np.testing.assert_array_equal(read_image(tmp_path / "r.bmp").pixels, [[0, 0, 1, 1, 1, 2, 255]])


@pytest.mark.filterwarnings("ignore:Corrupt EXIF")
def test_corrupt_file_names_the_file(tmp_path):
    for name, data in [("bad.png", b"not an image at all"), ("bad.tif", b"II*\x00garbage")]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError, match=name):
            read_image(tmp_path / name)
    good = tmp_path / "good.png"
    write_image(good, _rgb(9))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="truncated.png"):
        read_image(truncated)
    assert issubclass(ImageReadError, ValueError)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.png"):
        read_image(tmp_path / "nothere.png")


def test_overwrite_refusal(tmp_path):
    path = tmp_path / "x.png"
    write_image(path, _rgb(10))
    with pytest.raises(FileExistsError, match="x.png"):
        write_image(path, _rgb(11))
    np.testing.assert_array_equal(read_image(path).pixels, _rgb(10))
    write_image(path, _rgb(11), overwrite=True)
    np.testing.assert_array_equal(read_image(path).pixels, _rgb(11))
    assert _files_in(tmp_path) == ["x.png"]


def test_atomic_write_leaves_no_temp_files(tmp_path, monkeypatch):
    out = tmp_path / "new" / "sub" / "img.png"
    write_image(out, _rgb(12))  # creates the parent folders
    assert _files_in(out.parent) == ["img.png"]

    def explode(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(PILImage.Image, "save", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_image(out.parent / "other.png", _rgb(13))
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_image(out, _rgb(13), overwrite=True)
    assert _files_in(out.parent) == ["img.png"]
    np.testing.assert_array_equal(read_image(out).pixels, _rgb(12))


def test_atomic_write_text_permissions(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "hello")
    assert target.read_text() == "hello"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_write_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="from_float"):
        write_image(tmp_path / "f.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="extension"):
        write_image(tmp_path / "f.gif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 5), np.uint8))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Conversions


def test_to_float_and_from_float():
    u8 = np.array([0, 1, 128, 255], np.uint8)
    u16 = np.array([0, 1, 32768, 65535], np.uint16)
    np.testing.assert_allclose(to_float(u8), u8 / 255.0, rtol=1e-6)
    np.testing.assert_allclose(to_float(u16), u16 / 65535.0, rtol=1e-6)
    assert to_float(u8).dtype == np.float32
    f = np.array([0.25, 0.5], np.float64)
    assert to_float(f).dtype == np.float32 and np.allclose(to_float(f), f)
    np.testing.assert_array_equal(from_float(to_float(u8)), u8)
    np.testing.assert_array_equal(from_float(to_float(u16), np.uint16), u16)
    clipped = from_float(np.array([-0.5, 1.5, np.nan, 0.5 / 255, 1.5 / 255]), np.uint8)
    np.testing.assert_array_equal(clipped, [0, 255, 0, 0, 2])  # rounding half to even
    with pytest.raises(TypeError):
        to_float(np.array([1], np.int32))


def test_gray_conversions():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    expected = np.rint(rgb.astype(float) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    np.testing.assert_array_equal(rgb_to_gray(rgb), expected)
    assert convert_channels(rgb, gray=True).shape == (1, 4, 1)
    gray = rgb[:, :, 0]
    np.testing.assert_array_equal(convert_channels(gray, gray=False), np.dstack([gray] * 3))
    rgba = np.dstack([rgb, np.zeros((1, 4), np.uint8)])
    np.testing.assert_array_equal(convert_channels(rgba, gray=False), rgb)


# ------------------------------------------------------------------------------------------
# Finding files


def test_is_image_file():
    assert IMAGE_EXTENSIONS >= {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
    assert is_image_file("a/b.PNG") and is_image_file(Path("x.tiff"))
    assert not is_image_file("a.txt") and not is_image_file("._a.png")


def test_list_images(tmp_path):
    for rel in ["b.png", "a.jpg", "sub/c.tif", "sub/deeper/d.bmp", ".hidden/e.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")

    flat = list_images([tmp_path])
    assert [rel.as_posix() for _, rel in flat] == ["a.jpg", "b.png"]
    deep = list_images([tmp_path], recursive=True)
    assert [rel.as_posix() for _, rel in deep] == [
        "a.jpg",
        "b.png",
        "sub/c.tif",
        "sub/deeper/d.bmp",
    ]
    assert all(file == tmp_path / rel for file, rel in deep)

    single = list_images([tmp_path / "sub" / "c.tif", tmp_path / "b.png", tmp_path / "b.png"])
    assert [(f.name, r.as_posix()) for f, r in single] == [("c.tif", "c.tif"), ("b.png", "b.png")]

    pattern = list_images([str(tmp_path / "s*" / "*.tif")])
    assert [r.as_posix() for _, r in pattern] == ["sub/c.tif"]
    recursive_pattern = list_images([str(tmp_path / "**" / "*.bmp")], recursive=True)
    assert [r.as_posix() for _, r in recursive_pattern] == ["sub/deeper/d.bmp"]


def test_list_images_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        list_images([empty])
    (empty / "sub").mkdir()
    (empty / "sub" / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="recursive=True"):
        list_images([empty])
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        list_images([tmp_path / "missing_dir"])
    with pytest.raises(FileNotFoundError, match="nomatch"):
        list_images([str(tmp_path / "nomatch*.png")])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="notes.txt"):
        list_images([tmp_path / "notes.txt"])


# ------------------------------------------------------------------------------------------
# Files that hold more, or other, than one plain image


def test_png_colour_key_becomes_alpha(tmp_path):
    """A tRNS colour key on gray or RGB (8 and 16 bit) is transparency, kept as alpha."""
    import png

    rgb = _rgb(20)
    key = tuple(int(v) for v in rgb[0, 0])
    PILImage.fromarray(rgb).save(tmp_path / "rgb.png", transparency=key)
    gray = rgb[..., 0]
    PILImage.fromarray(gray).save(tmp_path / "gray.png", transparency=int(gray[0, 0]))
    rgb16 = _rgb(21, np.uint16)
    png.Writer(W, H, greyscale=False, bitdepth=16, transparent=tuple(map(int, rgb16[1, 2]))).write(
        open(tmp_path / "rgb16.png", "wb"), rgb16.reshape(H, -1).tolist()  # noqa: SIM115
    )
    gray16 = rgb16[..., 0]
    png.Writer(W, H, greyscale=True, bitdepth=16, transparent=int(gray16[3, 4])).write(
        open(tmp_path / "gray16.png", "wb"), gray16.tolist()  # noqa: SIM115
    )
    for name, colour, where in (("rgb", rgb, (0, 0)), ("gray", gray, (0, 0)),
                                ("rgb16", rgb16, (1, 2)), ("gray16", gray16, (3, 4))):
        pixels = read_image(tmp_path / f"{name}.png").pixels
        top = np.iinfo(colour.dtype).max
        assert pixels.dtype == colour.dtype and pixels.shape[-1] == (4 if colour.ndim == 3 else 2)
        np.testing.assert_array_equal(pixels[..., :-1].squeeze(-1) if colour.ndim == 2
                                      else pixels[..., :-1], colour)
        keyed = (colour == colour[where]).all(-1) if colour.ndim == 3 else colour == colour[where]
        np.testing.assert_array_equal(pixels[..., -1], np.where(keyed, 0, top))


def test_float_tiff_outside_zero_one_is_an_error_naming_the_file(tmp_path):
    floats = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    tifffile.imwrite(tmp_path / "scaled.tif", floats * 255)
    with pytest.raises(ImageReadError, match=r"scaled\.tif: float pixel values span 0\.\.255"):
        read_image(tmp_path / "scaled.tif")
    # Rounding just past the range (under one 8-bit step) is clipped, not refused.
    tifffile.imwrite(tmp_path / "rounded.tif", floats * 1.002 - 0.001)
    pixels = read_image(tmp_path / "rounded.tif").pixels
    assert pixels.min() == 0 and pixels.max() == 65535


def test_only_the_first_frame_is_read_with_a_warning(tmp_path):
    pages = np.stack([_rgb(30 + i)[..., 0] for i in range(3)])
    tifffile.imwrite(tmp_path / "pages.tif", pages, photometric="minisblack")
    frames = [PILImage.fromarray(_rgb(40 + i)) for i in range(2)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match=r"pages\.tif: holds 3 frames or pages; only the first"):
        np.testing.assert_array_equal(read_image(tmp_path / "pages.tif").pixels, pages[0])
    with pytest.warns(UserWarning, match=r"anim\.png: holds 2 frames"):
        np.testing.assert_array_equal(read_image(tmp_path / "anim.png").pixels, _rgb(40))


def test_bmp_write_drops_alpha_with_a_warning(tmp_path):
    rgba = np.dstack([_rgb(50), np.full((H, W), 7, np.uint8)])
    with pytest.warns(UserWarning, match=r"x\.bmp: BMP keeps no alpha channel"):
        write_image(tmp_path / "x.bmp", rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "x.bmp").pixels, rgba[..., :3])


def test_a_hidden_file_named_on_its_own_is_listed(tmp_path):
    (tmp_path / ".shot.png").write_bytes(b"")
    assert [r.as_posix() for _, r in list_images([tmp_path / ".shot.png"])] == [".shot.png"]
    (tmp_path / "b.png").write_bytes(b"")
    assert [r.as_posix() for _, r in list_images([tmp_path])] == ["b.png"]


def test_write_into_a_folder_that_is_a_file_says_so(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"cannot create the folder .*taken is a file"):
        write_image(tmp_path / "taken" / "sub" / "x.png", _rgb(51))


def test_a_folder_that_cannot_be_written_is_named_not_the_temporary_file(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, mode=0o777):
        if flags & os.O_CREAT:
            raise OSError(30, "Read-only file system", path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(OSError, match="cannot write into the folder") as info:
        write_image(tmp_path / "x.png", _rgb(52))
    assert info.value.filename == str(tmp_path) and ".tmp" not in str(info.value)
