"""The projection head of PatchNCE (CUT's ``netF``, ``mlp_sample``): sample patches, project,
normalise."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from imtrans import InvalidArgumentError
from imtrans.nn import init_weights

__all__ = ["PatchSampleHead"]


class PatchSampleHead(nn.Module):
    """Per feature layer, a 2-layer MLP on patches sampled at random positions, L2-normalised.

    Built eagerly from known channel counts (the official code builds it on the first batch),
    so its parameters exist when the optimisers are created and checkpoints load strictly.
    Weights are initialised N(0, ``init_gain``) with zero biases, as the official ``init_net``.

    Args:
        channels: Channels of each feature layer, in order.
        out_channels: Width of both linear layers (CUT's ``netF_nc``, 256).
        init_gain: Standard deviation of the initial weights.

    Raises:
        InvalidArgumentError: ``channels`` is empty or a count is not positive.

    Example:
        >>> head = PatchSampleHead([3, 16], out_channels=8)
        >>> feats = [torch.zeros(2, 3, 8, 8), torch.zeros(2, 16, 4, 4)]
        >>> [p.shape for p in head(feats, 10)[0]]
        [torch.Size([2, 10, 8]), torch.Size([2, 10, 8])]
    """

    def __init__(self, channels: Sequence[int], *, out_channels: int = 256,
                 init_gain: float = 0.02) -> None:
        super().__init__()
        if not channels or any(c < 1 for c in channels) or out_channels < 1:
            raise InvalidArgumentError(f"feature channels and out_channels must be >= 1, got "
                                       f"channels {list(channels)} and {out_channels}")
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, out_channels), nn.ReLU(), nn.Linear(out_channels,
                                                                            out_channels))
            for c in channels)
        init_weights(self, "normal", init_gain)

    def forward(self, features: Sequence[Tensor], num_patches: int,
                patch_ids: Sequence[Tensor] | None = None) -> tuple[list[Tensor], list[Tensor]]:
        """Project ``num_patches`` patches of each feature map.

        Args:
            features: One (N, C_i, H_i, W_i) map per layer.
            num_patches: Patches per map (all positions when a map has fewer).
            patch_ids: Positions to take, one index tensor per layer (those another call
                returned); ``None`` draws new ones, the same for every image of the batch.

        Returns:
            The projected patches, one (N, P_i, out_channels) tensor of unit vectors per
            layer, and the positions taken.
        """
        if len(features) != len(self.mlps):
            raise InvalidArgumentError(f"the head was built for {len(self.mlps)} feature "
                                       f"layers, got {len(features)}")
        projected, taken = [], []
        for index, (feature, mlp) in enumerate(zip(features, self.mlps, strict=True)):
            n, _, h, w = feature.shape
            flat = feature.permute(0, 2, 3, 1).flatten(1, 2)  # (N, H*W, C)
            if patch_ids is None:
                ids = torch.randperm(h * w, device=feature.device)[:min(num_patches, h * w)]
            else:
                ids = patch_ids[index]
            patches = mlp(flat[:, ids, :].flatten(0, 1))
            # The official Normalize: x / (||x|| + 1e-7).
            patches = patches / (patches.norm(p=2, dim=1, keepdim=True) + 1e-7)
            projected.append(patches.view(n, -1, patches.shape[-1]))
            taken.append(ids)
        return projected, taken
