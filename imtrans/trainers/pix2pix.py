"""pix2pix (Isola et al., 2017): paired translation with a conditional discriminator."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from imtrans.errors import InvalidArgumentError
from imtrans.trainers.base import NetworkSpec, Trainer

if TYPE_CHECKING:
    from imtrans.recipe import Recipe

__all__ = ["Pix2PixTrainer"]


class Pix2PixTrainer(Trainer):
    """pix2pix: one generator, a conditional discriminator on (input, output), L1 to the target.

    Defaults are the paper's: unet_256 generator with batch norm and dropout, 70x70
    PatchGAN on the 6-channel concatenation of input and output, vanilla GAN loss,
    L1 weight 100, no image history, and the discriminator loss halved.

    Args:
        pool_size: Generated images kept to update the discriminator with (0 in the paper).
        d_loss_scale: Factor on the discriminator loss (0.5 in the paper).
    """

    pair_slots: ClassVar[dict[str, str]] = {"reconstruction": "G(a) vs its paired target b"}

    def __init__(self, *, pool_size: int = 0, d_loss_scale: float = 0.5) -> None:
        if pool_size < 0:
            raise InvalidArgumentError(f"pool_size must be >= 0, got {pool_size}")
        if d_loss_scale <= 0:
            raise InvalidArgumentError(f"d_loss_scale must be > 0, got {d_loss_scale}")
        self.pool_size = pool_size
        self.d_loss_scale = d_loss_scale

    @classmethod
    def recipe_defaults(cls) -> dict[str, Any]:
        return {
            "data": {"name": "aligned"},
            "generator": {"name": "unet_256", "norm": "batch", "dropout": True},
            "discriminator": {"name": "patchgan", "n_layers": 3, "norm": "batch"},
            "losses": {
                "adversarial": {"name": "gan"},
                "reconstruction": {"name": "l1", "weight": 100.0},
            },
        }

    @classmethod
    def networks(cls, recipe: Recipe) -> dict[str, NetworkSpec]:
        a, b = recipe.data.channels()
        return {
            "gen": NetworkSpec("generators", "generator", {"in_channels": a, "out_channels": b}),
            # Conditional: the discriminator sees the input beside the (real or fake) output.
            "disc": NetworkSpec("discriminators", "discriminator", {"in_channels": a + b}),
        }
