"""Reading the architecture off an official state dict, for files without ``train_opt.txt``.

A state dict's keys and shapes tell most of what built it: the generator family and size
(``model.<i>.conv_block`` keys are a ResNet, one per block; nested ``model.model`` keys a
U-Net, one level per down-sampling), ``ngf`` and the channel counts from the first and last
conv, the norm (running statistics: batch; no bias on the first conv: ``none``), dropout in
ResNet blocks (it shifts the block's second conv from index 5 to 6; with batch norm, index 6
of a block without dropout is the norm after that conv), and for a PatchGAN
``ndf`` and ``n_layers``. What cannot be told (dropout in a U-Net, which has no weights) is
left to the options or the trainer's default. Inferred values fill only options the caller
and ``train_opt.txt`` left out, and the strict load checks them all.

Example:
    >>> from imtrans.nn.generators import unet_128
    >>> generator_options(unet_128(ngf=8).state_dict())["netG"]
    'unet_128'
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

__all__ = ["discriminator_options", "generator_options"]

_RESNETS = {9: "resnet_9blocks", 6: "resnet_6blocks"}
_UNETS = {7: "unet_128", 8: "unet_256"}


def _norm(state: Mapping[str, Tensor], first_bias: str) -> str:
    # Batch norm has a weight beside its statistics; PyTorch before 0.4 also wrote
    # statistics for instance norm, which has no weight.
    if any(key.endswith(".running_mean") and f"{key[:-len('running_mean')]}weight" in state
           for key in state):
        return "batch"
    return "instance" if first_bias in state else "none"


def _resnet(state: Mapping[str, Tensor]) -> dict[str, str]:
    blocks = {key.split(".")[1] for key in state if ".conv_block." in key}
    first = state.get("model.1.weight")
    convs = [key for key in state if key.count(".") == 2 and key.endswith(".weight")
             and state[key].dim() == 4]
    if first is None or first.dim() != 4 or not convs:
        return {}
    last = state[max(convs, key=lambda key: int(key.split(".")[1]))]
    options = {"ngf": str(first.shape[0]), "input_nc": str(first.shape[1]),
               "output_nc": str(last.shape[0]), "norm": _norm(state, "model.1.bias"),
               "no_dropout": str(not _resnet_dropout(state))}
    if len(blocks) in _RESNETS:
        options["netG"] = _RESNETS[len(blocks)]
    return options


def _resnet_dropout(state: Mapping[str, Tensor]) -> bool:
    """Whether the ResNet blocks hold dropout: their second conv is then at index 6, else 5.
    Index 6 also holds the weight of a batch norm after a conv at 5, so only a conv's
    (4-dimensional) weight there means dropout."""
    return any(key.endswith(".conv_block.6.weight") and value.dim() == 4
               for key, value in state.items())


def _unet(state: Mapping[str, Tensor]) -> dict[str, str]:
    first, last = state.get("model.model.0.weight"), state.get("model.model.3.weight")
    if first is None or last is None or first.dim() != 4 or last.dim() != 4:
        return {}
    depth = max(key.split(".").count("model") for key in state) - 1
    options = {"ngf": str(first.shape[0]), "input_nc": str(first.shape[1]),
               # the outermost up-convolution is transposed: its weight is (in, out, k, k)
               "output_nc": str(last.shape[1]), "norm": _norm(state, "model.model.0.bias")}
    if depth in _UNETS:
        options["netG"] = _UNETS[depth]
    return options


def generator_options(state: Mapping[str, Tensor]) -> dict[str, str]:
    """The official generator options a generator's state dict shows (possibly none)."""
    if any(key.startswith("model.model.") for key in state):
        return _unet(state)
    if any(".conv_block." in key for key in state):
        return _resnet(state)
    return {}


def discriminator_options(state: Mapping[str, Tensor]) -> dict[str, str]:
    """``ndf`` and ``n_layers_D`` of a PatchGAN state dict (empty for others).

    Example:
        >>> from imtrans.nn.discriminators.patchgan import patchgan
        >>> discriminator_options(patchgan(ndf=8, n_layers=2).state_dict())["n_layers_D"]
        '2'
    """
    convs = [key for key, value in state.items()
             if key.startswith("model.") and key.endswith(".weight") and value.dim() == 4]
    first = state.get("model.0.weight")
    if first is None or len(convs) < 3:
        return {}
    # The norm is one option for both networks; the generator's state tells it.
    return {"netD": "n_layers", "ndf": str(first.shape[0]), "n_layers_D": str(len(convs) - 2)}
