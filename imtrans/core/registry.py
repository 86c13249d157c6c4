"""One generic registry of named component builders.

A registry is a dict of name -> builder plus a decorator (the pattern of timm's
``register_model``), one instance per component kind. Builders are classes or functions that
take keyword arguments only; their signature is the contract a recipe table is checked against.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import pydantic

from imtrans.errors import DuplicateComponentError, InvalidArgumentError, UnknownComponentError

__all__ = ["Entry", "Registry", "accepted_arguments"]

BuilderT = TypeVar("BuilderT", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    """A registered component: its name, builder and the plugin that registered it."""

    name: str
    builder: Callable[..., Any]
    source: str

    @property
    def summary(self) -> str:
        """The first line of the builder's docstring, or an empty string."""
        doc = inspect.getdoc(self.builder) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """Named builders of one component kind (generator, loss, ...).

    Args:
        kind: The singular name of the kind, used in messages ("generator").

    Example:
        >>> losses = Registry("loss")
        >>> @losses.register("double", source="example")
        ... def double(*, weight: float = 1.0):
        ...     return lambda x: 2 * weight * x
        >>> losses.create("double", weight=0.5)(3.0)
        3.0
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, builder: BuilderT | None = None, *, source: str = "imtrans"
    ) -> Any:
        """Register ``builder`` under ``name``; without ``builder``, return a decorator.

        Raises:
            DuplicateComponentError: ``name`` is already registered (by anyone).
            InvalidArgumentError: ``name`` is not lower_snake or ``builder`` is not callable.
        """
        if builder is None:
            return lambda fn: self.register(name, fn, source=source)
        if not isinstance(name, str) or not name or name != name.lower() or " " in name:
            raise InvalidArgumentError(
                f"{self.kind} names are lower_snake strings; {source} gave {name!r}"
            )
        if not callable(builder):
            raise InvalidArgumentError(
                f"{self.kind} {name!r} from {source}: builder must be callable, got {builder!r}"
            )
        if name in self._entries:
            first = self._entries[name].source
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered twice: by {first} and by {source}"
            )
        self._entries[name] = Entry(name, builder, source)
        return builder

    def get(self, name: str) -> Entry:
        """Return the entry for ``name``.

        Raises:
            UnknownComponentError: with the closest match and the known names.
        """
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownComponentError(self._unknown_message(name)) from None

    def create(self, name: str, /, where: str | None = None, **kwargs: Any) -> Any:
        """Build the component ``name`` after checking ``kwargs`` against its signature.

        Args:
            name: The registered name.
            where: Where the arguments come from (a recipe table such as ``[losses.cycle]``),
                put at the front of error messages.
            **kwargs: Arguments for the builder.

        Raises:
            UnknownComponentError: ``name`` is not registered.
            InvalidArgumentError: an argument is not accepted or has the wrong type.
        """
        entry = self.get(name)
        checked = check_arguments(entry.builder, kwargs, where or f"{self.kind} {name!r}")
        return entry.builder(**checked)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        """The registered entries, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def _unknown_message(self, name: object) -> str:
        known = self.names()
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if known else "(none registered)"
        return f"unknown {self.kind} {name!r}{hint} known: {listing}"


def accepted_arguments(builder: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword arguments a builder accepts, by name (``self`` and ``*args`` excluded)."""
    params = inspect.signature(builder).parameters
    return {
        n: p
        for n, p in params.items()
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"
    }


def check_arguments(
    builder: Callable[..., Any], kwargs: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Check ``kwargs`` against ``builder``'s signature and type hints; return coerced values.

    Raises:
        InvalidArgumentError: naming ``where``, the argument and the value.
    """
    accepted = accepted_arguments(builder)
    takes_any = any(
        p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values()
    )
    unexpected = [k for k in kwargs if k not in accepted]
    if unexpected and not takes_any:
        names = ", ".join(accepted) or "(none)"
        close = difflib.get_close_matches(unexpected[0], list(accepted), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InvalidArgumentError(
            f"{where}: unexpected argument {unexpected[0]!r}{hint}; accepted: {names}"
        )
    missing = [n for n, p in accepted.items() if p.default is p.empty and n not in kwargs]
    if missing:
        raise InvalidArgumentError(f"{where}: missing required argument {missing[0]!r}")
    hints = _type_hints(builder)
    checked = dict(kwargs)
    for key, value in kwargs.items():
        if key not in hints:
            continue
        try:
            checked[key] = pydantic.TypeAdapter(hints[key]).validate_python(value, strict=False)
        except pydantic.ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise InvalidArgumentError(f"{where}: {key} = {value!r} is invalid: {reason}") from None
    return checked


def _type_hints(builder: Callable[..., Any]) -> dict[str, Any]:
    """Resolved type hints of a builder (its ``__init__`` for a class); {} when unresolvable."""
    target = builder.__init__ if inspect.isclass(builder) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:  # a plugin's unresolvable annotation must not make it unusable
        return {}
