"""The generic registry: registration, lookup with suggestions, argument checking."""

from __future__ import annotations

from typing import Literal

import pytest

from imtrans.core.registry import Registry, check_arguments
from imtrans.errors import DuplicateComponentError, InvalidArgumentError, UnknownComponentError


def make_loss(*, weight: float = 1.0, reduction: Literal["mean", "sum"] = "mean") -> tuple:
    """A stand-in loss builder."""
    return ("loss", weight, reduction)


@pytest.fixture
def losses() -> Registry:
    registry = Registry("loss")
    registry.register("lsgan", make_loss, source="imtrans")
    registry.register("cycle", make_loss, source="imtrans")
    return registry


def test_create_passes_arguments_and_records_the_source(losses: Registry) -> None:
    assert losses.create("cycle", weight=10.0) == ("loss", 10.0, "mean")
    assert losses.get("cycle").source == "imtrans"
    assert losses.get("cycle").summary == "A stand-in loss builder."
    assert losses.names() == ["cycle", "lsgan"]
    assert "lsgan" in losses and len(losses) == 2


def test_registering_a_name_twice_raises_and_names_both_sources(losses: Registry) -> None:
    with pytest.raises(DuplicateComponentError, match="by imtrans and by my-plugin"):
        losses.register("lsgan", make_loss, source="my-plugin")


def test_decorator_form_registers() -> None:
    registry = Registry("generator")

    @registry.register("tiny", source="tests")
    def tiny(*, width: int = 2) -> int:
        return width

    assert registry.create("tiny", width=5) == 5


def test_unknown_name_suggests_the_closest_and_lists_all(losses: Registry) -> None:
    with pytest.raises(UnknownComponentError) as info:
        losses.get("lsgn")
    assert str(info.value) == "unknown loss 'lsgn'; did you mean 'lsgan'? known: cycle, lsgan"


def test_unknown_name_without_close_match_lists_all(losses: Registry) -> None:
    with pytest.raises(UnknownComponentError, match=r"unknown loss 'zzz' known: cycle, lsgan"):
        losses.get("zzz")


def test_unexpected_argument_names_the_table_and_accepted_ones(losses: Registry) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        losses.create("cycle", where="[losses.cycle]", wieght=10)
    assert str(info.value) == (
        "[losses.cycle]: unexpected argument 'wieght' (did you mean 'weight'?); "
        "accepted: weight, reduction"
    )


def test_wrong_value_type_names_the_argument_and_value(losses: Registry) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\[losses.cycle\]: reduction = 'median'"):
        losses.create("cycle", where="[losses.cycle]", reduction="median")
    with pytest.raises(InvalidArgumentError, match="weight = 'ten' is invalid"):
        losses.create("cycle", where="[losses.cycle]", weight="ten")


def test_values_are_coerced_to_the_annotated_type() -> None:
    assert check_arguments(make_loss, {"weight": 10}, "here") == {"weight": 10.0}
    assert isinstance(check_arguments(make_loss, {"weight": 10}, "here")["weight"], float)


def test_missing_required_argument_is_reported() -> None:
    def needs_root(*, root: str, size: int = 1) -> None:
        """A builder with a required argument."""

    with pytest.raises(InvalidArgumentError, match=r"\[data\]: missing required argument 'root'"):
        check_arguments(needs_root, {"size": 2}, "[data]")


def test_bad_names_and_builders_are_refused() -> None:
    registry = Registry("loss")
    with pytest.raises(InvalidArgumentError, match="lower_snake"):
        registry.register("My Loss", make_loss)
    with pytest.raises(InvalidArgumentError, match="callable"):
        registry.register("thing", 42)  # type: ignore[arg-type]
