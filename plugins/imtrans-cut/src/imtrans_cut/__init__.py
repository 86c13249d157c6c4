"""CUT and FastCUT for imtrans (Park et al., "Contrastive Learning for Unpaired Image-to-Image
Translation", ECCV 2020).

Registers, through the ``imtrans`` entry point ``cut`` (:mod:`imtrans_cut.plugin`):

* the loss ``patchnce`` (:class:`PatchNCELoss`), a feature loss any trainer with a feature
  slot can use (``cut``'s ``nce``; ``cyclegan``'s and ``pix2pix``'s ``features``);
* the trainer ``cut`` (:class:`CUTTrainer`), CUT by default and FastCUT by its settings.
"""

from __future__ import annotations

from imtrans_cut.head import PatchSampleHead
from imtrans_cut.loss import PatchNCELoss, patch_nce_loss
from imtrans_cut.trainer import CUTTrainer

__all__ = ["CUTTrainer", "PatchNCELoss", "PatchSampleHead", "patch_nce_loss"]
__version__ = "0.1.0"
