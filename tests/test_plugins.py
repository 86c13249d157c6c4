"""Plugin loading: built-ins through hooks, entry points, allowlist, errors naming the plugin."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from torch import Tensor

import imtrans
from imtrans.catalogue.plugins import load_components
from imtrans.losses import PairLoss


class SquaredLoss(PairLoss):
    """Squared error (an inline test plugin's loss)."""

    def __init__(self, *, weight: float = 1.0) -> None:
        super().__init__(weight=weight)

    def distance(self, output: Tensor, target: Tensor) -> Tensor:
        return (output - target) ** 2


class InlinePlugin:
    @imtrans.hookimpl
    def register_losses(self, register):
        register("squared", SquaredLoss)


def write_distribution(site: Path, dist: str, module: str, code: str, ep_name: str) -> None:
    """Put an installed-looking distribution with an ``imtrans`` entry point under ``site``."""
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[imtrans]\n{ep_name} = {module}\n")


GOOD_PLUGIN = """
    import imtrans
    from imtrans.losses import L1Loss

    @imtrans.hookimpl
    def register_losses(register):
        register("fancy_l1", L1Loss)
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("IMTRANS_PLUGINS", raising=False)
    monkeypatch.delenv("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return tmp_path


def test_builtins_register_through_the_hooks() -> None:
    loaded = load_components(autoload=False)
    builtin = next(p for p in loaded.plugins if p.name == "imtrans")
    assert builtin.registered["loss"] == ["gan", "lsgan", "hinge", "wgangp", "l1", "cycle",
                                          "identity"]
    assert {"resnet_9blocks", "resnet_6blocks", "unet_256", "unet_128"} <= set(
        loaded.generators.names())
    assert {"patchgan", "pixel"} <= set(loaded.discriminators.names())
    assert set(loaded.trainers.names()) >= {"cyclegan", "pix2pix"}
    assert set(loaded.datasets.names()) >= {"aligned", "unaligned", "single"}
    assert all(e.source == "imtrans" for e in loaded.losses.entries())


def test_inline_plugin_adds_a_loss_with_its_source() -> None:
    loaded = load_components(autoload=False, extra_plugins=[("squared-plugin", InlinePlugin())])
    entry = loaded.losses.get("squared")
    assert entry.source == "squared-plugin"
    assert loaded.losses.create("squared", weight=2.0).weight == 2.0
    # Fresh registries each time: nothing leaks into the next load.
    assert "squared" not in load_components(autoload=False).losses


def test_entry_point_plugin_is_found_with_its_distribution(site: Path) -> None:
    write_distribution(site, "imtrans-fancy", "imtrans_fancy", GOOD_PLUGIN, "fancy")
    loaded = load_components()
    assert loaded.losses.get("fancy_l1").source == "imtrans-fancy"
    info = next(p for p in loaded.plugins if p.name == "fancy")
    assert (info.distribution, info.version, info.registered) == (
        "imtrans-fancy", "1.2.3", {"loss": ["fancy_l1"]})


def test_allowlist_and_autoload_switch(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_distribution(site, "imtrans-fancy", "imtrans_fancy", GOOD_PLUGIN, "fancy")
    monkeypatch.setenv("IMTRANS_PLUGINS", "something-else")
    assert "fancy_l1" not in load_components().losses
    monkeypatch.setenv("IMTRANS_PLUGINS", "imtrans-fancy")  # by distribution name
    assert "fancy_l1" in load_components().losses
    monkeypatch.setenv("IMTRANS_PLUGINS", "fancy")  # by entry point name
    assert "fancy_l1" in load_components().losses
    monkeypatch.setenv("IMTRANS_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "fancy_l1" not in load_components().losses


def test_plugin_that_fails_to_import_is_named(site: Path) -> None:
    write_distribution(site, "imtrans-broken", "imtrans_broken",
                       "import a_module_that_is_not_there\n", "broken")
    with pytest.raises(imtrans.PluginError) as info:
        load_components()
    message = str(info.value)
    assert "plugin 'broken' (imtrans-broken) failed to import 'imtrans_broken'" in message
    assert "ModuleNotFoundError" in message and "a_module_that_is_not_there" in message


def test_misspelled_hook_name_is_rejected(site: Path) -> None:
    code = """
        import imtrans

        @imtrans.hookimpl
        def register_loses(register):
            pass
    """
    write_distribution(site, "imtrans-typo", "imtrans_typo", code, "typo")
    with pytest.raises(imtrans.PluginError, match=r"plugin 'typo'.*register_loses"):
        load_components()


def test_plugin_failing_inside_its_hook_is_named(site: Path) -> None:
    code = """
        import imtrans

        @imtrans.hookimpl
        def register_generators(register):
            raise RuntimeError("weights file missing")
    """
    write_distribution(site, "imtrans-crash", "imtrans_crash", code, "crash")
    with pytest.raises(imtrans.PluginError) as info:
        load_components()
    assert str(info.value) == (
        "plugin 'crash' failed in register_generators: RuntimeError: weights file missing")


def test_plugin_registering_a_builtin_name_is_refused(site: Path) -> None:
    code = """
        import imtrans
        from imtrans.losses import L1Loss

        @imtrans.hookimpl
        def register_losses(register):
            register("lsgan", L1Loss)
    """
    write_distribution(site, "imtrans-clash", "imtrans_clash", code, "clash")
    with pytest.raises(imtrans.PluginError,
                       match="loss 'lsgan' is registered twice: by imtrans and by imtrans-clash"):
        load_components()


def test_default_components_are_loaded_once() -> None:
    assert imtrans.components() is imtrans.components()


@pytest.mark.parametrize(("hook", "kind"), [
    ("register_generators", "generators"),
    ("register_discriminators", "discriminators"),
    ("register_losses", "losses"),
    ("register_trainers", "trainers"),
    ("register_datasets", "datasets"),
])
def test_each_hook_fills_its_registry(hook: str, kind: str) -> None:
    def builder(*, size: int = 1) -> int:
        """A stand-in component."""
        return size

    class Plugin:
        pass

    def implementation(register):
        register("from_plugin", builder)

    implementation.__name__ = hook
    setattr(Plugin, hook, staticmethod(imtrans.hookimpl(implementation)))
    loaded = load_components(autoload=False, extra_plugins=[("kinds-plugin", Plugin())])
    assert loaded.registry(kind).get("from_plugin").source == "kinds-plugin"
    assert loaded.registry(kind).create("from_plugin", size=3) == 3
    others = [k for k in ("generators", "discriminators", "losses", "trainers", "datasets")
              if k != kind]
    assert all("from_plugin" not in loaded.registry(k) for k in others)
