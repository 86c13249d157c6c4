"""The loaded components: one :class:`~imtrans.core.registry.Registry` per kind, and the
plugins that filled them.

Filling them (built-ins and entry points through pluggy) is the catalogue's job
(:mod:`imtrans.catalogue.plugins`); the layers below take a :class:`Components` and read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imtrans.core.registry import Registry
from imtrans.errors import ImtransError

__all__ = ["KINDS", "Components", "PluginInfo"]

#: Component kinds (plural, as in ``imtrans list KIND``) -> singular names used in messages.
KINDS: dict[str, str] = {
    "generators": "generator",
    "discriminators": "discriminator",
    "losses": "loss",
    "trainers": "trainer",
    "datasets": "dataset",
    "loggers": "logger",
}


@dataclass
class PluginInfo:
    """A loaded plugin: its name, where it came from and what it registered."""

    name: str
    version: str
    distribution: str
    registered: dict[str, list[str]] = field(default_factory=dict)


class Components:
    """The registries of one loaded plugin set (one per kind in :data:`KINDS`), plus the
    plugins that filled them."""

    def __init__(self) -> None:
        self.generators = Registry("generator")
        self.discriminators = Registry("discriminator")
        self.losses = Registry("loss")
        self.trainers = Registry("trainer")
        self.datasets = Registry("dataset")
        self.loggers = Registry("logger")
        self.plugins: list[PluginInfo] = []

    def registry(self, kind: str) -> Registry:
        """The registry of ``kind``, plural or singular ("losses" or "loss").

        Raises:
            ImtransError: ``kind`` is not a component kind.
        """
        plural = kind if kind in KINDS else {v: k for k, v in KINDS.items()}.get(kind)
        if plural is None:
            raise ImtransError(f"unknown component kind {kind!r}; known: {', '.join(KINDS)}")
        registry: Registry = getattr(self, plural)
        return registry
