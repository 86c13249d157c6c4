"""The ``imtrans models`` commands: list the official pretrained models, download and import one.

Thin commands over :mod:`imtrans.zoo.catalog` and :mod:`imtrans.zoo.fetch`. Library errors
(:class:`~imtrans.errors.DataError`, :class:`~imtrans.errors.CheckpointError`) propagate to the
``imtrans`` group, which turns them into a message and an exit code.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.text import Text

from imtrans.cli.download_bar import download_bar
from imtrans.cli.output import add_row, make_table, stdout_console

__all__ = ["models"]


@click.group("models")
def models() -> None:
    """List and download the official pretrained pix2pix and CycleGAN models."""


@models.command("list")
def list_models() -> None:
    """List the official pretrained models imtrans can download."""
    from imtrans.zoo.catalog import MODELS

    table = make_table("name", "method", "translates", "architecture", "size")
    for entry in MODELS:
        add_row(table, entry.name, entry.method, entry.translates, entry.architecture_text,
                entry.size_text)
    stdout_console().print(table)


@models.command("download")
@click.argument("name")
@click.option("--dir", "runs_dir", default="runs", show_default=True,
              type=click.Path(file_okay=False), help="Folder that receives the run DIR/NAME/.")
@click.option("--base-url", default=None, metavar="URL",
              help="Download URL/NAME.pth from a mirror instead of the official server "
                   "(default: $IMTRANS_MODELS_URL, else the official URL).")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="Network timeout in seconds, on connect and on each read.")
@click.option("--deadline", default=None, type=click.FloatRange(min=1), metavar="SECONDS",
              help="Give up when the whole download takes longer (the partial file is kept "
                   "to resume). Default: 10 minutes plus the size at 100 KiB/s.")
def download_model(name: str, runs_dir: str, base_url: str | None, timeout: float,
                   deadline: float | None) -> None:
    """Download official model NAME (see `imtrans models list`) and import it as the run
    DIR/NAME, ready for `imtrans translate` and for fine-tuning.

    An interrupted download resumes where it stopped when the command is run again.
    """
    from imtrans.data.catalog import format_bytes
    from imtrans.zoo.catalog import get_model
    from imtrans.zoo.fetch import fetch_model

    entry = get_model(name)
    console = stdout_console()
    stages = {"download": "downloading", "import": "importing"}
    with download_bar(console, entry.name, entry.approx_bytes, stages) as bar:
        fetched = fetch_model(entry, Path(runs_dir) / entry.name, progress=bar.on_bytes,
                              timeout=timeout, base_url=base_url, on_stage=bar.on_stage,
                              deadline=deadline)
    got, imported = fetched.downloaded, fetched.imported
    console.print(Text(f"downloaded {fetched.url} ({format_bytes(got.size)}) to "
                       f"{fetched.official_file}"))
    console.print(Text(f"sha256 {got.sha256}"))
    console.print(Text("not verified by checksum (none published); verified by a strict load "
                       "of the official architecture"))
    console.print(Text(f"imported {entry.name} ({entry.translates}) as the {imported.trainer} "
                       f"run {fetched.run_dir}"))
    console.print(Text(f"checkpoint {fetched.checkpoint}"))
    if imported.fresh:
        console.print(Text(f"freshly initialised (not in the official file): "
                           f"{', '.join(imported.fresh)}"))
    if entry.note:
        console.print(Text("note: ", style="bold yellow") + Text(entry.note))
    console.print(Text(f"translate with: imtrans translate {fetched.run_dir} INPUT OUTPUT"))
