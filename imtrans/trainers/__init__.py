"""Trainers: how a recipe's networks and loss terms are wired into a training method."""

from imtrans.trainers.base import NetworkSpec, Trainer
from imtrans.trainers.cyclegan import CycleGANTrainer
from imtrans.trainers.pix2pix import Pix2PixTrainer

__all__ = ["CycleGANTrainer", "NetworkSpec", "Pix2PixTrainer", "Trainer"]
