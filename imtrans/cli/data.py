"""The ``imtrans data`` commands: list the known datasets, download one, combine A and B folders.

Thin commands over :mod:`imtrans.data.catalog`, :mod:`imtrans.data.download` and
:mod:`imtrans.preparation.combine`. Library errors (:class:`~imtrans.errors.DataError`) propagate to
the ``imtrans`` group, which turns them into a message and an exit code. Tables and consoles
come from :mod:`imtrans.cli.output`.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, Progress, TextColumn
from rich.text import Text

from imtrans.cli.download_bar import download_bar
from imtrans.cli.existing_path import ExistingPath
from imtrans.cli.output import add_row, make_table, stdout_console

__all__ = ["data"]

_SHOWN = 10  # names listed when reporting files without a partner


@click.group("data")
def data() -> None:
    """List, download and prepare datasets."""


@data.command("list")
def list_datasets() -> None:
    """List the datasets imtrans can download."""
    from imtrans.data.catalog import CATALOG

    table = make_table("name", "kind", "size", "layout", "checksum")
    for entry in CATALOG:
        checksum = "sha256" if entry.sha256 else "md5" if entry.md5 else "none"
        add_row(table, entry.name, entry.kind, entry.size_text, entry.layout, checksum)
    stdout_console().print(table)


@data.command("download")
@click.argument("name")
@click.option("--dir", "datasets_dir", default="datasets", show_default=True,
              type=click.Path(file_okay=False), help="Folder that receives DIR/NAME/.")
@click.option("--keep-archive", is_flag=True, help="Keep the archive after extracting it.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=1),
              help="Network timeout in seconds, on connect and on each read.")
@click.option("--deadline", default=None, type=click.FloatRange(min=1), metavar="SECONDS",
              help="Give up when the whole download takes longer (the partial file is kept "
                   "to resume). Default: 10 minutes plus the size at 100 KiB/s.")
def download_dataset(name: str, datasets_dir: str, keep_archive: bool, timeout: float,
                     deadline: float | None) -> None:
    """Download dataset NAME (see `imtrans data list`) into DIR/NAME, verified and extracted.

    An interrupted download resumes where it stopped when the command is run again. A download
    stops at the catalogued size (16 GiB when unknown) and within --deadline.
    """
    from imtrans.data.catalog import format_bytes, get_entry
    from imtrans.data.download import fetch_dataset

    entry = get_entry(name)
    console = stdout_console()
    stages = {"download": "downloading", "extract": "extracting"}
    with download_bar(console, entry.name, entry.size_bytes, stages, "verifying") as bar:
        fetched = fetch_dataset(entry, datasets_dir, bar.on_bytes, on_stage=bar.on_stage,
                                timeout=timeout, keep_archive=keep_archive, deadline=deadline)
    if fetched.downloaded is None:
        console.print(Text(f"{fetched.path} already holds files: nothing downloaded "
                           f"(delete it to download {entry.name} again)"))
        return
    got = fetched.downloaded
    console.print(Text(f"downloaded {entry.url} ({format_bytes(got.size)})"))
    if got.verified:
        which = "sha256" if entry.sha256 else "md5"
        console.print(Text(f"verified: the {which} matches the catalog"))
    else:
        console.print(Text("warning: ", style="bold yellow") + Text(
            f"the catalog has no checksum for {entry.name}, so this download could not be "
            "verified; compare the sha256 below with a trusted source"))
    console.print(Text(f"sha256 {got.sha256}"))
    console.print(Text(f"{entry.name} is in {fetched.path}/ ({entry.layout})"))


def _names(label: str, names: tuple[str, ...]) -> Text:
    shown = ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more"
                                         if len(names) > _SHOWN else "")
    return Text(f"{len(names)} {label}: {shown}")


@data.command("combine")
@click.argument("a_dir", type=ExistingPath(file_okay=False))
@click.argument("b_dir", type=ExistingPath(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--no-resize", is_flag=True,
              help="Fail when a B image's size differs from its A image instead of resizing B.")
@click.option("--overwrite", is_flag=True,
              help="Replace existing files in OUT_DIR that an earlier combine did not write.")
def combine(a_dir: str, b_dir: str, out_dir: str, no_resize: bool, overwrite: bool) -> None:
    """Write A|B side-by-side images (pix2pix layout) into OUT_DIR.

    Images pair by relative path without extension (A_DIR/train/1.jpg with B_DIR/train/1.png);
    train/ val/ test/ sub-folders of A_DIR are mirrored into OUT_DIR. OUT_DIR may not be or lie
    inside A_DIR or B_DIR, and no output may replace an A or B file (refused before writing),
    nor a file an earlier combine into OUT_DIR did not write (unless --overwrite).
    """
    from imtrans.preparation.combine import combine_aligned

    console = stdout_console()
    with Progress(TextColumn("combining"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=console, transient=True) as progress:
        task = progress.add_task("combine", total=None)
        result = combine_aligned(
            Path(a_dir), Path(b_dir), Path(out_dir), resize_b=not no_resize, overwrite=overwrite,
            progress=lambda done, total: progress.update(task, completed=done, total=total))
    splits = ", ".join(f"{split} {count}" for split, count in result.per_split.items() if split)
    console.print(Text(f"wrote {result.written} pairs to {result.out}"
                       + (f" ({splits})" if splits else "")))
    if result.resized:
        console.print(Text(f"resized {result.resized} B images to their A image's size"))
    if result.missing_in_b:
        console.print(_names(f"images in {a_dir} have no partner in {b_dir}", result.missing_in_b))
    if result.missing_in_a:
        console.print(_names(f"images in {b_dir} have no partner in {a_dir}", result.missing_in_a))
