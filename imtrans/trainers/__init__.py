"""Trainers: how a recipe's networks and loss terms are wired into a training method.

Besides the built-in trainers, this module exports what a plugin's trainer is built from: the
:class:`Trainer` contract and :class:`AdversarialTrainer` (the GAN prelude), the
:class:`NetworkSpec` and :class:`DomainChannels` of :meth:`Trainer.networks`,
:class:`LossTerms`, :class:`OptimizerFactory`, :func:`set_requires_grad`,
:func:`discriminator_loss`, :func:`check_adversarial_settings`, :class:`ImagePool`, and
:class:`TrainableTerms` with :func:`bind_feature_terms` for loss terms that own parameters,
and :func:`update`, one network group's update (freeze, clear, backward, step) that a
whole-step compile can capture, with the calls it is made of, :func:`clear_grads`,
:func:`backward` and :func:`optimizer_step` (see :mod:`imtrans.trainers.updates`).
"""

from imtrans.trainers.adversarial import (
    AdversarialTrainer,
    check_adversarial_settings,
    discriminator_loss,
    set_requires_grad,
)
from imtrans.trainers.base import DomainChannels, NetworkSpec, Trainer
from imtrans.trainers.cyclegan import CycleGANTrainer
from imtrans.trainers.image_pool import ImagePool
from imtrans.trainers.loss_terms import LossTerms
from imtrans.trainers.optim import OptimizerFactory
from imtrans.trainers.pix2pix import Pix2PixTrainer
from imtrans.trainers.trainable_terms import TrainableTerms, bind_feature_terms
from imtrans.trainers.updates import backward, clear_grads, optimizer_step, update

__all__ = [
    "AdversarialTrainer",
    "CycleGANTrainer",
    "DomainChannels",
    "ImagePool",
    "LossTerms",
    "NetworkSpec",
    "OptimizerFactory",
    "Pix2PixTrainer",
    "TrainableTerms",
    "Trainer",
    "backward",
    "bind_feature_terms",
    "check_adversarial_settings",
    "clear_grads",
    "discriminator_loss",
    "optimizer_step",
    "set_requires_grad",
    "update",
]
