"""Trainers: how a recipe's networks and loss terms are wired into a training method.

Besides the built-in trainers, this module exports what a plugin's trainer is built from: the
:class:`Trainer` contract, :func:`make_adam`, :func:`set_requires_grad`,
:func:`discriminator_loss`, :func:`terms_by_slot`, and :class:`TrainableTerms` with
:func:`bind_feature_terms` for loss terms that own parameters.
"""

from imtrans.trainers.base import (
    NetworkSpec,
    Trainer,
    discriminator_loss,
    make_adam,
    set_requires_grad,
    terms_by_slot,
)
from imtrans.trainers.cyclegan import CycleGANTrainer
from imtrans.trainers.pix2pix import Pix2PixTrainer
from imtrans.trainers.trainable_terms import TrainableTerms, bind_feature_terms

__all__ = [
    "CycleGANTrainer",
    "NetworkSpec",
    "Pix2PixTrainer",
    "TrainableTerms",
    "Trainer",
    "bind_feature_terms",
    "discriminator_loss",
    "make_adam",
    "set_requires_grad",
    "terms_by_slot",
]
