"""Plugin loading: built-in components and third-party packages take the same road.

Loading is explicit (never an import side effect), lazy and idempotent: :func:`components`
loads once per process and returns the same :class:`Components` afterwards.
Third-party plugins are found through the ``imtrans`` entry point group::

    [project.entry-points.imtrans]
    example_loss = "imtrans_example_loss"

Environment:
    ``IMTRANS_PLUGINS=a,b``: load only these entry points (by entry point or distribution name).
    ``IMTRANS_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points at all (built-ins only).
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import os
from collections.abc import Callable, Collection, Iterable
from typing import Any

import pluggy

from imtrans.core import hookspecs
from imtrans.core.components import KINDS, Components, PluginInfo
from imtrans.core.registry import Registry
from imtrans.errors import ImtransError, PluginError

__all__ = ["KINDS", "Components", "PluginInfo", "components", "load_components"]

BUILTIN_PLUGIN = "imtrans"
ENTRY_POINT_GROUP = "imtrans"


def load_components(
    *,
    autoload: bool | None = None,
    allow: Collection[str] | None = None,
    extra_plugins: Iterable[tuple[str, object]] = (),
) -> Components:
    """Load the built-in components and the plugins into fresh registries.

    Args:
        autoload: Load entry point plugins; ``None`` reads ``IMTRANS_DISABLE_PLUGIN_AUTOLOAD``.
        allow: Entry point or distribution names to load; ``None`` reads ``IMTRANS_PLUGINS``
            (unset or empty: all).
        extra_plugins: ``(name, plugin)`` pairs registered after the entry points; used by
            tests and by programs that embed imtrans.

    Returns:
        A :class:`Components` whose registries hold everything the plugins registered.

    Raises:
        PluginError: a plugin fails to import, implements an unknown hook or fails to register;
            the message names the plugin and the cause.
    """
    from imtrans.catalogue import builtin  # imported here so that `import imtrans` stays light

    if autoload is None:
        autoload = os.environ.get("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", "").lower() not in {
            "1", "true", "yes", "on"
        }
    if allow is None:
        allow = {n.strip() for n in os.environ.get("IMTRANS_PLUGINS", "").split(",") if n.strip()}
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    infos = {BUILTIN_PLUGIN: PluginInfo(BUILTIN_PLUGIN, _version("imtrans"), "imtrans")}
    _add(manager, BUILTIN_PLUGIN, builtin)
    if autoload:
        for ep, dist, version in _entry_points(allow):
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({dist}) failed to import {ep.value!r}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            _add(manager, ep.name, plugin)
            infos[ep.name] = PluginInfo(ep.name, version, dist)
    for name, plugin in extra_plugins:
        _add(manager, name, plugin)
        infos[name] = PluginInfo(name, "", name)
    try:
        manager.check_pending()
    except pluggy.PluginValidationError as exc:
        name = manager.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin {name!r}: {exc}") from exc
    result = Components()
    for hook_name, kind in hookspecs.HOOK_NAMES.items():
        _run_hook(manager, hook_name, result.registry(kind), infos)
    result.plugins = list(infos.values())
    return result


@functools.cache
def components() -> Components:
    """The process-wide components, loaded on first use (environment read then).

    Raises:
        PluginError: see :func:`load_components`.
    """
    return load_components()


def _add(manager: pluggy.PluginManager, name: str, plugin: object) -> None:
    try:
        manager.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from exc
    except ValueError as exc:  # pluggy: the same name or object registered twice
        raise PluginError(f"plugin {name!r} cannot be registered: {exc}") from exc


def _entry_points(allow: Collection[str]) -> list[tuple[metadata.EntryPoint, str, str]]:
    """The ``imtrans`` entry points, allowlisted, sorted by name for a stable order."""
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else ""
        if allow and ep.name not in allow and dist not in allow:
            continue
        found.append((ep, dist, version))
    return sorted(found, key=lambda item: item[0].name)


def _run_hook(
    manager: pluggy.PluginManager, hook_name: str, registry: Registry, infos: dict[str, PluginInfo]
) -> None:
    """Call one hook plugin by plugin, so that each component records who registered it."""
    # get_hookimpls() lists implementations in registration order: built-ins first.
    for impl in getattr(manager.hook, hook_name).get_hookimpls():
        source = impl.plugin_name
        info = infos[source]
        label = info.distribution if source != BUILTIN_PLUGIN else BUILTIN_PLUGIN
        register = _register_callback(registry, label, info)
        try:
            impl.function(**{arg: register for arg in impl.argnames})
        except ImtransError as exc:
            raise PluginError(f"plugin {source!r} failed in {hook_name}: {exc}") from exc
        except Exception as exc:
            raise PluginError(
                f"plugin {source!r} failed in {hook_name}: {type(exc).__name__}: {exc}"
            ) from exc


def _register_callback(
    registry: Registry, source: str, info: PluginInfo
) -> Callable[..., Any]:
    def register(name: str, builder: Callable[..., Any] | None = None) -> Any:
        if builder is None:  # used as a decorator: @register("name")
            return lambda fn: register(name, fn)
        registry.register(name, builder, source=source)
        info.registered.setdefault(registry.kind, []).append(name)
        return builder

    return register


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
