"""CycleGAN (Zhu et al., 2017): unpaired translation with two generators and cycle consistency."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from imtrans.errors import InvalidArgumentError
from imtrans.trainers.base import NetworkSpec, Trainer

if TYPE_CHECKING:
    from imtrans.recipe import Recipe

__all__ = ["CycleGANTrainer"]


class CycleGANTrainer(Trainer):
    """CycleGAN: two generators and two discriminators, cycle and identity losses.

    Defaults are the paper's: resnet_9blocks generators and 70x70 PatchGAN discriminators
    with instance norm, LSGAN, cycle weight 10 in both directions, identity weight
    0.5 * 10 = 5, a 50-image history of generated images for the discriminators, and the
    discriminator loss halved.

    Args:
        pool_size: Generated images kept to update the discriminators with (0: no history).
        d_loss_scale: Factor on the discriminator loss (0.5 in the paper, slowing D).
    """

    pair_slots: ClassVar[dict[str, str]] = {
        "cycle": "G_BA(G_AB(a)) vs a and G_AB(G_BA(b)) vs b",
        "identity": "G_AB(b) vs b and G_BA(a) vs a (needs equal channel counts)",
    }

    def __init__(self, *, pool_size: int = 50, d_loss_scale: float = 0.5) -> None:
        if pool_size < 0:
            raise InvalidArgumentError(f"pool_size must be >= 0, got {pool_size}")
        if d_loss_scale <= 0:
            raise InvalidArgumentError(f"d_loss_scale must be > 0, got {d_loss_scale}")
        self.pool_size = pool_size
        self.d_loss_scale = d_loss_scale

    @classmethod
    def recipe_defaults(cls) -> dict[str, Any]:
        return {
            "data": {"name": "unaligned"},
            "generator": {"name": "resnet_9blocks", "norm": "instance", "dropout": False},
            "discriminator": {"name": "patchgan", "n_layers": 3, "norm": "instance"},
            "losses": {
                "adversarial": {"name": "lsgan"},
                "cycle": {"name": "cycle", "weight": 10.0},
                "identity": {"name": "identity", "weight": 5.0},
            },
        }

    @classmethod
    def networks(cls, recipe: Recipe) -> dict[str, NetworkSpec]:
        a, b = recipe.data.channels()
        return {
            "gen_ab": NetworkSpec("generators", "generator", {"in_channels": a, "out_channels": b}),
            "gen_ba": NetworkSpec("generators", "generator", {"in_channels": b, "out_channels": a}),
            "disc_a": NetworkSpec("discriminators", "discriminator", {"in_channels": a}),
            "disc_b": NetworkSpec("discriminators", "discriminator", {"in_channels": b}),
        }
