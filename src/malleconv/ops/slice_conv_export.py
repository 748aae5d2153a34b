"""Slice-and-conv written with standard operators only, for exporting graphs (ONNX).

The fast paths of :func:`~malleconv.ops.slice_conv` are custom autograd functions with
Python loops over cache-sized row chunks whose count depends on the image size: an
exporter cannot turn them into a graph with a dynamic height and width. This path is the
same sum written with operators every exporter knows: per tap of the ``k x k`` kernel, the
tap's grid is upsampled to the full resolution (``F.interpolate``, bilinear,
``align_corners=False``: ONNX ``Resize`` with half-pixel coordinates), multiplied with the
input shifted by the tap (a slice of the zero-padded input) and accumulated. It is exact
against the fast paths (the same products, summed in another order) and is chosen by
:func:`~malleconv.ops.slice_conv` while a graph is exported (:func:`export_mode` or
``torch.onnx.is_in_onnx_export()``).

Its extra memory is the padded input and one full-resolution weight map per tap: fine for
inference, never used in training.
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn.functional as F

__all__ = [
    "EXPORT_TARGETS",
    "export_mode",
    "export_target",
    "gather_pad_to_multiple",
    "in_export_mode",
    "standard_slice_conv",
]

Tensor = torch.Tensor

_STATE = threading.local()

# What the exported graph is tuned for: "cpu", ONNX Runtime's x86 CPU provider, whose
# blocked channel layout (NCHWc) only chains through convolutions, Relu and Add, so
# element-wise steps are written as those; "web", onnxruntime-web's WebAssembly (no blocked
# layout), where one PRelu pass beats Max and Mul; "openvino", plain element-wise operators,
# which OpenVINO fuses itself. Only PReLU differs between them (layers.blocks.PReLU).
EXPORT_TARGETS = ("cpu", "web", "openvino")


@contextlib.contextmanager
def export_mode(target: str = "cpu"):
    """Within this context :func:`~malleconv.ops.slice_conv` (and the models built on it)
    use only standard operators (:func:`standard_slice_conv`) and shape-independent
    control flow, so that the graph an exporter records holds for every input size.

    ``target``: one of :data:`EXPORT_TARGETS`; layers that have several equal ways to be
    written in a graph read it (:func:`export_target`)."""
    if target not in EXPORT_TARGETS:
        raise ValueError(f"target must be one of {', '.join(EXPORT_TARGETS)}, got {target!r}")
    before = (getattr(_STATE, "on", False), getattr(_STATE, "target", "cpu"))
    _STATE.on, _STATE.target = True, target
    try:
        yield
    finally:
        _STATE.on, _STATE.target = before


def in_export_mode() -> bool:
    """Whether a graph is being recorded: inside :func:`export_mode`, an ONNX export or
    ``torch.jit.trace`` (whose graph would otherwise hold the fast paths' size-dependent
    loops as constants, and be silently wrong at other sizes)."""
    if getattr(_STATE, "on", False):
        return True
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing())


def export_target() -> str:
    """The target of the enclosing :func:`export_mode`; outside one ``"torch"`` while
    ``torch.jit.trace`` records a TorchScript graph, else ``"cpu"``."""
    if getattr(_STATE, "on", False):
        return _STATE.target
    if torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
        return "torch"
    return "cpu"


def gather_pad_to_multiple(x: Tensor, multiple: int, *, reflect: bool) -> Tensor:
    """``x (B, C, H, W)`` padded at the bottom and right to a multiple of ``multiple``, as
    index gathers along H and W with no shape-dependent branch (an exporter records
    ``F.pad``'s pad widths as constants).

    ``reflect``: row ``i >= H`` reads row ``2 (H - 1) - i`` when that index stays >= 0 for
    every padded row and column, else (where ``F.pad`` refuses to reflect) both axes
    replicate, as the models' padding does; without ``reflect`` row ``min(i, H - 1)``
    (replicate).
    """
    h, w = x.shape[-2], x.shape[-1]
    rows = torch.arange(0, (h + multiple - 1) // multiple * multiple, device=x.device)
    cols = torch.arange(0, (w + multiple - 1) // multiple * multiple, device=x.device)
    edge_rows, edge_cols = rows.clamp(max=h - 1), cols.clamp(max=w - 1)
    if reflect:
        reflect_rows = torch.where(rows < h, rows, 2 * (h - 1) - rows)
        reflect_cols = torch.where(cols < w, cols, 2 * (w - 1) - cols)
        can_reflect = (reflect_rows.min() >= 0) & (reflect_cols.min() >= 0)
        edge_rows = torch.where(can_reflect, reflect_rows, edge_rows)
        edge_cols = torch.where(can_reflect, reflect_cols, edge_cols)
    # Only the padded columns and rows are gathered, then appended: ONNX Runtime's Gather
    # along the last axis copies element by element, about 15x the time of the Concat's
    # block copies on a full-size feature map (docs/design.md, the ONNX export).
    x = torch.cat([x, x.index_select(3, edge_cols[w:])], dim=3)
    return torch.cat([x, x.index_select(2, edge_rows[h:])], dim=2)


def _upsample(t: Tensor, size) -> Tensor:
    # Always an interpolation, even when the sizes already match (the identity then):
    # a shape test would be control flow that depends on the input size.
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def standard_slice_conv(
    x: Tensor,
    grid: Tensor,
    bias: Tensor | None = None,
    *,
    groups: int = 1,
    guide: Tensor | None = None,
) -> Tensor:
    """:func:`~malleconv.ops.slice_conv` of an unguided grid in standard operators.

    Args:
        x: ``(B, C_in, H, W)``.
        grid: ``(B, C_out, C_in // groups, k, k, gh, gw)``.
        bias: ``(B, C_out, gh, gw)`` or None.
        groups: as in ``conv2d``.
        guide: must be None (guided grids have no export path).

    Returns:
        ``(B, C_out, H, W)``, equal to :func:`~malleconv.ops.slice_conv` up to float
        rounding. Depthwise grids (``C_in // groups == 1``, the MalleNet case) take one
        product per tap; grouped and dense grids a product and a sum over the group's
        input channels per tap.
    """
    if guide is not None or grid.dim() != 7:
        raise ValueError(
            "the export path of slice_conv supports unguided grids "
            f"(B, C_out, C_in // groups, k, k, gh, gw) only, got grid {tuple(grid.shape)}"
            f"{' with a guide' if guide is not None else ''}"
        )
    c_in, c_out, cg_in = x.shape[1], grid.shape[1], grid.shape[2]
    if cg_in != 1:
        return _grouped(x, grid, bias, groups)
    if c_out != c_in:
        x = x.repeat_interleave(c_out // c_in, dim=1)
    k = grid.shape[3]
    r = k // 2
    h, w = x.shape[-2], x.shape[-1]
    size = (h, w)
    padded = F.pad(x, (r, r, r, r))
    out = None
    for i in range(k):
        for j in range(k):
            weight = _upsample(grid[:, :, 0, i, j], size)
            term = weight * padded[:, :, i : i + h, j : j + w]
            out = term if out is None else out + term
    if bias is not None:
        out = out + _upsample(bias, size)
    return out


def _grouped(x: Tensor, grid: Tensor, bias: Tensor | None, groups: int) -> Tensor:
    """:func:`standard_slice_conv` of a grid with several input channels per group:
    per tap, ``(B, groups, C_out / groups, C_in / groups, H, W)`` weights times the
    group's shifted inputs, summed over the input channels."""
    b, c_out, cg_in, k = grid.shape[0], grid.shape[1], grid.shape[2], grid.shape[3]
    gh, gw = grid.shape[-2], grid.shape[-1]
    cg_out = c_out // groups
    r = k // 2
    h, w = x.shape[-2], x.shape[-1]
    padded = F.pad(x, (r, r, r, r))
    out = None
    for i in range(k):
        for j in range(k):
            taps = grid[:, :, :, i, j].reshape(b, c_out * cg_in, gh, gw)
            weight = _upsample(taps, (h, w)).reshape(b, groups, cg_out, cg_in, h, w)
            shifted = padded[:, :, i : i + h, j : j + w].reshape(b, groups, 1, cg_in, h, w)
            term = (weight * shifted).sum(3)
            out = term if out is None else out + term
    out = out.reshape(b, c_out, h, w)
    if bias is not None:
        out = out + _upsample(bias, (h, w))
    return out
