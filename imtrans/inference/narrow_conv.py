"""Convolutions with few output channels, computed as strided ones with more.

oneDNN's bf16 convolutions on the CPU compute output channels in groups of 16 (the float32
sums one AVX-512 register holds): a layer with 3 output channels costs what one with 16 does.
The ResNet generator's last layer (64 channels to 3 through a 7 x 7 kernel) took 15 ms of a
272 ms photo at 256 px on a 2-core CPU, at a fifth of the speed of its other layers.

:func:`column_stacked_conv2d` computes such a layer as a convolution of stride ``s`` across
the width whose ``s * C`` output channels hold ``s`` neighbouring output columns: channel
``r * C + c`` is channel ``c`` of the kernel moved ``r`` columns to the right in a kernel
``s - 1`` columns wider. That is the work of 16 channels on a ``s``-th of the positions: the
layer above took 5.4 ms with ``s = 5``. A channels-last result is already in its final order
in memory (columns ``q * s + r`` next to each other), so the rearrangement is a view, not a
copy. The sums are the same products as the plain convolution's plus exact zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ColumnStackedConv2d", "column_stacked_conv2d", "columns_per_position",
           "stack_narrow_convs"]

# Output channels oneDNN's bf16 convolution computes together: 16 float32 sums per AVX-512
# register. A layer with at most half as many is stacked.
_CHANNEL_GROUP = 16


def columns_per_position(out_channels: int) -> int:
    """The output columns one position of the stacked convolution computes: as many as fill a
    group of 16 channels (1 where ``out_channels`` leaves no room for a second)."""
    return max(1, _CHANNEL_GROUP // out_channels)


def column_stacked_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None,
                          padding: tuple[int, int], columns: int) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride and dilation 1, one group) for
    an ``N x C x H x W`` batch, computed ``columns`` output columns per position as the module
    docstring says. The result has the plain convolution's shape and values; for a
    channels-last ``x`` it is a channels-last view."""
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    pad_h, pad_w = padding
    width = x.shape[-1] + 2 * pad_w - kernel_w + 1
    # Extra zero columns each side so that the strided positions cover every output column
    # (the convolution pads them itself; no copy of x). At most ``columns`` are needed.
    extra = next(e for e in range(columns + 1)
                 if (width + 2 * e) // columns >= -(-(width + e) // columns))
    stacked = weight.new_zeros(columns * out_channels, in_channels, kernel_h,
                               kernel_w + columns - 1)
    for shift in range(columns):
        stacked[shift * out_channels:(shift + 1) * out_channels, :, :,
                shift:shift + kernel_w] = weight
    stacked = stacked.contiguous(memory_format=_layout(x))
    y = F.conv2d(x, stacked, None if bias is None else bias.repeat(columns),
                 stride=(1, columns), padding=(pad_h, pad_w + extra))
    batch, _, height, positions = y.shape
    y = y.view(batch, columns, out_channels, height, positions).permute(0, 2, 3, 4, 1)
    out = y.reshape(batch, out_channels, height, positions * columns)[..., extra:extra + width]
    if batch == 1:
        # The view's batch stride is the channel count, and a batch of one never steps it; but
        # torch guesses a tensor's layout from every stride (``suggest_memory_format``), and
        # group norm took such a view for the usual layout: it copied it back and gave its
        # output in that layout, rounded otherwise than the same image in a batch of two.
        out = out.as_strided(out.shape, (out.stride(2) * height, *out.stride()[1:]))
    return out


def _layout(x: Tensor) -> torch.memory_format:
    """Channels last for a channels-last batch, the usual layout otherwise."""
    return torch.channels_last if x.dim() == 4 and not x.is_contiguous() and \
        x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


class ColumnStackedConv2d(nn.Module):
    """A :class:`~torch.nn.Conv2d` (stride and dilation 1, one group, zero padding) computed
    by :func:`column_stacked_conv2d`. It keeps the convolution's ``weight`` and ``bias`` (the
    same parameters, so a state dict reads the same) and builds the stacked kernel on each
    call (microseconds), so it never holds stale weights."""

    def __init__(self, conv: nn.Conv2d, columns: int) -> None:
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.padding: tuple[int, int] = tuple(conv.padding)  # type: ignore[assignment]
        self.columns = columns

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:  # one image without a batch dimension, as Conv2d takes it
            return self.forward(x[None])[0]
        return column_stacked_conv2d(x, self.weight, self.bias, self.padding, self.columns)

    def extra_repr(self) -> str:
        out_channels, in_channels, kernel_h, kernel_w = self.weight.shape
        return (f"{in_channels}, {out_channels}, kernel_size=({kernel_h}, {kernel_w}), "
                f"padding={self.padding}, columns={self.columns}")


def _stackable(conv: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` (no subclass, hook or string padding, whose forward could differ)
    with stride and dilation 1, one group, zero padding and at most 8 output channels."""
    return (type(conv) is nn.Conv2d and not conv._forward_hooks
            and not conv._forward_pre_hooks and conv.groups == 1
            and tuple(conv.stride) == (1, 1) and tuple(conv.dilation) == (1, 1)
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple)
            and columns_per_position(conv.out_channels) > 1)


def stack_narrow_convs(module: nn.Module) -> nn.Module:
    """Replace (in place) every convolution of ``module`` with at most 8 output channels that
    :class:`ColumnStackedConv2d` computes the same (see :func:`_stackable`) by one."""
    for name, child in module.named_children():
        if _stackable(child):
            setattr(module, name, ColumnStackedConv2d(
                child, columns_per_position(child.out_channels)))  # type: ignore[arg-type]
        else:
            stack_narrow_convs(child)
    return module
