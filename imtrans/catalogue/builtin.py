"""The built-in components, registered through the same hooks third-party plugins implement."""

from __future__ import annotations

from imtrans.core.hookspecs import RegisterFn, hookimpl


@hookimpl
def register_generators(register: RegisterFn) -> None:
    from imtrans.nn import generators

    register("resnet", generators.resnet)
    register("resnet_9blocks", generators.resnet_9blocks)
    register("resnet_6blocks", generators.resnet_6blocks)
    register("unet", generators.unet)
    register("unet_256", generators.unet_256)
    register("unet_128", generators.unet_128)


@hookimpl
def register_discriminators(register: RegisterFn) -> None:
    from imtrans.nn.discriminators import patchgan, pixel

    register("patchgan", patchgan)
    register("pixel", pixel)


@hookimpl
def register_losses(register: RegisterFn) -> None:
    from imtrans.losses import adversarial, reconstruction

    register("gan", adversarial.VanillaGANLoss)
    register("lsgan", adversarial.LSGANLoss)
    register("hinge", adversarial.HingeLoss)
    register("wgangp", adversarial.WGANGPLoss)
    register("l1", reconstruction.L1Loss)
    register("cycle", reconstruction.CycleLoss)
    register("identity", reconstruction.IdentityLoss)


@hookimpl
def register_trainers(register: RegisterFn) -> None:
    from imtrans.trainers import CycleGANTrainer, Pix2PixTrainer

    register("cyclegan", CycleGANTrainer)
    register("pix2pix", Pix2PixTrainer)


@hookimpl
def register_datasets(register: RegisterFn) -> None:
    from imtrans.data import folders, paired_folders

    register("aligned", folders.AlignedDataset)
    register("unaligned", folders.UnalignedDataset)
    register("single", folders.SingleDataset)
    register("paired", paired_folders.PairedDataset)


@hookimpl
def register_loggers(register: RegisterFn) -> None:
    # Each backend imports its package only when built, so a missing extra costs nothing
    # until a recipe asks for that backend.
    from imtrans.loggers import mlflow, tensorboard, wandb

    register("tensorboard", tensorboard.TensorBoardLogger)
    register("wandb", wandb.WandbLogger)
    register("mlflow", mlflow.MlflowLogger)
