"""The ``imtrans import`` command: official pix2pix / CycleGAN checkpoints to a run directory.

A thin command over :func:`imtrans.zoo.importer.import_official`; library errors propagate to
the ``imtrans`` group, which turns them into a message and an exit code.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from rich.text import Text

from imtrans.cli.existing_path import ExistingPath
from imtrans.cli.output import stdout_console
from imtrans.errors import InvalidArgumentError

__all__ = ["import_checkpoints"]

#: Command-line flags for the official options that decide the networks, spelled as the
#: official code spells them; every other official option goes through --opt.
_FLAGS = (
    ("--model", "model", click.Choice(["cycle_gan", "pix2pix", "test"])),
    ("--netG", "netG", click.Choice(["resnet_9blocks", "resnet_6blocks", "unet_128",
                                     "unet_256"])),
    ("--netD", "netD", click.Choice(["basic", "n_layers", "pixel"])),
    ("--n_layers_D", "n_layers_D", click.IntRange(min=1)),
    ("--ngf", "ngf", click.IntRange(min=1)),
    ("--ndf", "ndf", click.IntRange(min=1)),
    ("--norm", "norm", click.Choice(["batch", "instance", "none"])),
    ("--input_nc", "input_nc", click.IntRange(min=1)),
    ("--output_nc", "output_nc", click.IntRange(min=1)),
    ("--direction", "direction", click.Choice(["AtoB", "BtoA"])),
)


def _official_flags(function: Callable[..., None]) -> Callable[..., None]:
    for flag, name, kind in reversed(_FLAGS):
        function = click.option(flag, name, type=kind, default=None,
                                help=f"The official --{name} (default: train_opt.txt's, else "
                                     "what the tensors show, else the trainer's default)."
                                )(function)
    return function


def _parse_opts(pairs: tuple[str, ...]) -> dict[str, str]:
    from imtrans.zoo.options import IMPORTED_OPTIONS

    parsed = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        if not equals or name not in IMPORTED_OPTIONS:
            raise InvalidArgumentError(f"--opt {pair!r}: expected NAME=VALUE with NAME one of "
                                       f"{', '.join(IMPORTED_OPTIONS)}")
        parsed[name] = value
    return parsed


@click.command("import")
@click.argument("source", type=ExistingPath())
@click.argument("run_dir", type=click.Path(file_okay=False))
@_official_flags
@click.option("--no_dropout", "no_dropout", is_flag=True, default=None,
              help="The official --no_dropout (the CycleGAN pretrained models need it).")
@click.option("--opt", "opts", multiple=True, metavar="NAME=VALUE",
              help="Any other official option read from train_opt.txt (lambda_A=10, "
                   "gan_mode=lsgan...); repeatable.")
@click.option("--epoch", default="latest", show_default=True,
              help="Which epoch of a checkpoint folder: latest or a number.")
def import_checkpoints(source: str, run_dir: str, opts: tuple[str, ...], epoch: str,
                       no_dropout: bool | None, **flags: object) -> None:
    """Turn the official checkpoint SOURCE (a .pth file or a folder of them, with
    train_opt.txt beside it when there is one) into the imtrans run directory RUN_DIR.

    The files are read with torch.load(weights_only=True) only and loaded strictly; the run
    gets a step-0 checkpoint with fresh optimiser state. translate, eval and export take it
    like any run; `run --resume` from it (or [init] from in a recipe) fine-tunes it.
    """
    from imtrans.zoo.importer import import_official

    options = _parse_opts(opts)
    options |= {name: str(value) for name, value in flags.items() if value is not None}
    if no_dropout:
        options["no_dropout"] = "True"
    imported = import_official(source, run_dir, options=options, epoch=epoch)
    console = stdout_console()

    def say(line: str) -> None:
        console.print(Text(line), highlight=False)

    recipe = imported.recipe
    say(f"imported {imported.trainer} from {source}"
        + (f" (options from {imported.options_file})" if imported.options_file else ""))
    for role, path in imported.roles.items():
        zeros = imported.zero_biases.get(role, 0)
        say(f"  {role:<7} <- {path.name}: strict load passed"
            + (f", {zeros} conv biases loaded as zeros (official norm none)" if zeros else ""))
    if imported.fresh:
        say(f"  {', '.join(imported.fresh)}: not in the import, freshly initialised")
    say(f"generator {recipe.generator.name} {_summary(recipe.generator.kwargs)}; "
        f"discriminator {recipe.discriminator.name} {_summary(recipe.discriminator.kwargs)}")
    say(f"wrote {imported.checkpoint} (step 0, fresh optimiser state) and "
        f"{imported.run_dir / 'recipe.toml'}")
    say(f"translate with: imtrans translate {imported.run_dir} INPUT OUTPUT")


def _summary(kwargs: dict[str, object]) -> str:
    keys = ("ngf", "ndf", "n_layers", "norm", "dropout")
    return ", ".join(f"{key} {kwargs[key]}" for key in keys if key in kwargs)
