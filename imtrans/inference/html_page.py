"""The results page of ``imtrans translate --html``: each input beside its output.

Like the ``index.html`` of the official pix2pix/CycleGAN ``test.py``, written into the output
folder. It stays usable when that folder is moved or copied elsewhere, because everything it
shows lies inside it and is linked by a relative path:

- outputs are shown as they are (a browser cannot show TIFF, so TIFF outputs get a PNG
  preview, linked to the full file);
- inputs, which may live anywhere, are copied as small JPEGs (at most
  :data:`THUMBNAIL_SIDE` pixels a side) under ``OUTPUT/index_files/inputs/``; nothing is ever
  written beside the inputs.

Images that are not 8-bit (16-bit, signed, float, more bands) are shown through
:func:`~imtrans.data.display.display_rgb`: the 1st to 99th percentile of each image mapped onto
0..255, one band in gray or the first three as RGB. Such outputs always get a PNG preview (a
browser would show a 16-bit PNG of CT values nearly black), linked to the full file in its own
type; 8-bit images are shown exactly as before.

A large set is split into pages of :data:`ROWS_PER_PAGE` rows (``index.html``,
``index_2.html``...) linked from each other; images load lazily, so a page costs what is
scrolled to. Inputs that could not be read are listed on ``index.html``.

Example:
    >>> rows = [PageRow(Path("in/a.jpg"), Path("out/a.jpg"), "a.jpg")]  # doctest: +SKIP
    >>> write_pages(Path("out"), rows, PageHeader("step_4.safetensors", 4, "AtoB", "paper"))
    ... # doctest: +SKIP
    [PosixPath('out/index.html')]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import quote

from PIL import Image

from imtrans.core.atomic import atomic_path, atomic_write
from imtrans.core.printable import printable_path
from imtrans.data.display import display_rgb
from imtrans.data.images import image_to_array
from imtrans.data.native_images import decode_image, to_channels
from imtrans.errors import DataError
from imtrans.report.assets import SCRIPT

__all__ = ["ASSETS", "ROWS_PER_PAGE", "THUMBNAIL_SIDE", "PageHeader", "PageRow",
           "check_page_folder", "page_files", "page_name", "results_page", "write_pages"]

#: Rows on one page; more go to ``index_2.html``, ``index_3.html``...
ROWS_PER_PAGE = 200
#: The folder, inside the output folder, holding the page's copies of inputs (and previews).
ASSETS = "index_files"
#: The longest side, in pixels, of an input's copy: sharp at the 256-pixel cells, even on
#: high-density screens, and small on disk.
THUMBNAIL_SIDE = 512

# What browsers show in an <img>; other outputs (TIFF) get a PNG preview.
_BROWSER_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


@dataclass(frozen=True)
class PageRow:
    """One translated image: what to show as its input and output, and its caption.

    Attributes:
        input: The image shown as the input; ``None`` when there is none to show.
        output: The image shown as the output.
        caption: The file's name (escaped when written).
        output_file: The full output, linked from the shown one when they differ.
    """

    input: Path | None
    output: Path
    caption: str
    output_file: Path | None = None


@dataclass(frozen=True)
class PageHeader:
    """What the pages say about the translation as a whole.

    Attributes:
        checkpoint: The checkpoint translated with (a path or name).
        step: Its training step.
        direction: ``AtoB`` or ``BtoA``.
        mode: The translator's mode (``paper`` or ``eval``).
        skipped: ``(input, reason)`` of every input that could not be read.
    """

    checkpoint: str
    step: int
    direction: str
    mode: str
    skipped: Sequence[tuple[str, str]] = ()


def page_name(number: int) -> str:
    """The file name of page ``number`` (from 1): ``index.html``, ``index_2.html``..."""
    return "index.html" if number == 1 else f"index_{number}.html"


def check_page_folder(folder: Path, pairs: Sequence[tuple[Path, Path]]) -> None:
    """Refuse a page whose copies would overwrite an input or output, or whose comparison
    would be meaningless because the outputs replace their inputs.

    Raises:
        DataError: an input or output lies under ``folder/index_files``, or an output is its
            own input.
    """
    assets = (folder / ASSETS).resolve()
    for source, target in pairs:
        for path in (source, target):
            if path.resolve().is_relative_to(assets):
                raise DataError(f"--html keeps its copies of the inputs in {folder / ASSETS}, "
                                f"but {path} is there; choose another OUTPUT folder")
        if source.resolve() == target.resolve():
            raise DataError(f"--html shows each input beside its output, but output {target} "
                            f"overwrites its input; choose another OUTPUT folder")


def write_pages(folder: Path, rows: Sequence[PageRow], header: PageHeader,
                rows_per_page: int = ROWS_PER_PAGE) -> list[Path]:
    """Write ``folder/index.html`` (and ``index_2.html``... past ``rows_per_page`` rows).

    Images are linked by their path relative to ``folder`` (so the rows' paths may lie
    anywhere, though the pages survive a move only for those inside ``folder``). Each page is
    written atomically; ``folder`` is made if missing. Nothing but the pages is written.

    Returns:
        The pages written, the first one first.
    """
    count = max(1, math.ceil(len(rows) / rows_per_page))
    folder.mkdir(parents=True, exist_ok=True)  # no output written (all skipped): no folder yet
    pages = []
    for number in range(1, count + 1):
        chunk = rows[(number - 1) * rows_per_page:number * rows_per_page]
        path = folder / page_name(number)
        atomic_write(path, _render(folder, chunk, header, number, count, len(rows)))
        pages.append(path)
    return pages


def results_page(folder: Path, pairs: Sequence[tuple[Path, Path]], written: Sequence[Path],
                 header: PageHeader, channels: int = 3, previews: bool = False) -> list[Path]:
    """Copy the inputs of the ``written`` outputs under ``folder/index_files`` and write the
    pages (see :func:`write_pages`).

    Args:
        folder: The output folder; every planned output lies inside it.
        pairs: ``(input, output)`` as planned (:func:`~imtrans.inference.files.plan_outputs`).
        written: The outputs actually written; rows follow the order of ``pairs``.
        header: The header; its ``skipped`` list is shown on the first page.
        channels: The translator's input channels: 1 shows the inputs in gray, as the network
            saw them; any other count in RGB.
        previews: Every output gets a PNG preview (outputs that are not 8-bit, which a
            browser would not show usefully); otherwise only those a browser cannot show.

    Returns:
        The pages written, the first one first.
    """
    done = set(written)
    rows = []
    for source, target in pairs:
        if target not in done:
            continue
        relative = target.relative_to(folder)
        shown, full = target, None
        if previews or target.suffix.lower() not in _BROWSER_SUFFIXES:
            preview = _copy(target, _preview_path(folder, relative), None, "PNG")
            if preview is not None:
                shown, full = preview, target
        copy = _copy(source, _input_copy_path(folder, relative), channels, "JPEG")
        # The input's own name (the output's may differ by --format), in its sub-folder.
        # Shown as text, so a name that is not UTF-8 is written with \xNN escapes.
        caption = printable_path(relative.with_name(source.name).as_posix())
        rows.append(PageRow(copy, shown, caption, full))
    return write_pages(folder, rows, header)


def page_files(folder: Path, pairs: Sequence[tuple[Path, Path]],
               previews: bool = False) -> list[Path]:
    """Every file :func:`results_page` may write for ``pairs`` (with the same ``previews``):
    the pages, the inputs' copies and the previews (so that they can be checked before any
    work)."""
    count = max(1, math.ceil(len(pairs) / ROWS_PER_PAGE))
    files = [folder / page_name(number) for number in range(1, count + 1)]
    for _, target in pairs:
        relative = target.relative_to(folder)
        files.append(_input_copy_path(folder, relative))
        if previews or target.suffix.lower() not in _BROWSER_SUFFIXES:
            files.append(_preview_path(folder, relative))
    return files


def _input_copy_path(folder: Path, relative: Path) -> Path:
    return folder / ASSETS / "inputs" / f"{relative.as_posix()}.jpg"


def _preview_path(folder: Path, relative: Path) -> Path:
    return folder / ASSETS / "outputs" / f"{relative.as_posix()}.png"


def _copy(source: Path, target: Path, channels: int | None,
          file_format: str) -> Path | None:
    """A reduced copy of ``source`` at ``target`` (the suffix is added to the whole name, so
    copies of ``a.jpg`` and ``a.png`` differ); ``None`` when it cannot be read or written.

    ``channels`` is the generator's input channels (the image is shown as the network read
    it: 1 in gray, others in RGB), ``None`` for an output (its own bands). 8-bit images are
    copied as they always were; others through :func:`display_rgb`.
    """
    try:
        decoded = decode_image(source)
        if isinstance(decoded, Image.Image):
            array = image_to_array(decoded, 1 if channels == 1 else 3)
            image = Image.fromarray(array[:, :, 0] if channels == 1 else array)
        else:
            shown = display_rgb(decoded if channels is None
                                else to_channels(decoded, channels, source))
            image = Image.fromarray(shown[:, :, 0] if channels == 1 else shown)
        image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as partial:
            image.save(partial, format=file_format, **({"quality": 90}
                                                       if file_format == "JPEG" else {}))
    except (DataError, OSError, ValueError):
        return None  # the row then says the image is not available; the page still works
    return target


def _link(folder: Path, path: Path) -> str:
    """``path`` as a URL relative to ``folder``, percent-encoded (``#``, ``%``, ``?``, spaces
    and quotes in file names would otherwise break or end the link) and HTML-escaped."""
    try:
        relative = Path(os.path.relpath(path, folder)).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return escape(path.resolve().as_uri())
    return escape(quote(os.fsencode(relative), safe="/"))  # the name's own bytes


def _image(folder: Path, path: Path | None, label: str, link: Path | None = None) -> str:
    if path is None:
        return f'<p class="missing">{label} not available</p>'
    src = _link(folder, path)
    href = _link(folder, link) if link is not None else src
    return (f'<a href="{href}"><img src="{src}" alt="{label}" loading="lazy" '
            f'decoding="async"></a>')


def _nav(number: int, count: int) -> str:
    if count == 1:
        return ""
    links = [f"<strong>{n}</strong>" if n == number else f'<a href="{page_name(n)}">{n}</a>'
             for n in range(1, count + 1)]
    return f'<nav class="pages">page {" ".join(links)}</nav>'


def _render(folder: Path, rows: Sequence[PageRow], header: PageHeader, number: int,
            count: int, total: int) -> str:
    checkpoint, direction = escape(header.checkpoint), escape(header.direction)
    file = Path(header.checkpoint)
    # A run's checkpoint is named by its run (runs/NAME/checkpoints/FILE), others by the file.
    named = (file.parent.parent.name if file.parent.name == "checkpoints"
             and file.parent.parent.name else file.name)
    title = f"{escape(named)}, step {header.step}, {direction}"
    summary = f"{total} image(s) translated"
    if header.skipped:
        where = ("below" if number == 1
                 else f'on <a href="{page_name(1)}#skipped">page 1</a>')
        summary += f", {len(header.skipped)} skipped (listed {where})"
    body = "".join(
        f'<tr><td class="name">{escape(row.caption)}</td>'
        f"<td>{_image(folder, row.input, 'input')}</td>"
        f"<td>{_image(folder, row.output, 'output', row.output_file)}</td></tr>\n"
        for row in rows)
    table = (f"<table><thead><tr><th>file</th><th>input</th><th>output ({direction})"
             f"</th></tr></thead>\n<tbody>\n{body}</tbody></table>" if rows
             else '<p class="empty">no image was translated</p>')
    skipped = ""
    if header.skipped and number == 1:
        items = "".join(f"<li><code>{escape(path)}</code>: "
                        f"{escape(printable_path(reason))}</li>\n"
                        for path, reason in header.skipped)
        skipped = (f'<section id="skipped"><h2>Skipped ({len(header.skipped)})</h2>\n'
                   f"<ul>\n{items}</ul></section>")
    nav = _nav(number, count)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - imtrans translate</title>
<style>{_STYLE}</style>
<script>{SCRIPT}</script>
</head>
<body>
<header><h1>{title}</h1>
<p>checkpoint <code>{checkpoint}</code>, step {header.step}, {direction}, \
{escape(header.mode)} mode; {summary}</p>
{nav}</header>
<main>
{table}
{nav}
{skipped}
</main>
</body>
</html>
"""


_STYLE = """
body { margin: 0 auto; padding: 0 20px 40px; max-width: 1100px; color: #111827;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
h1 { font-size: 22px; margin: 18px 0 4px; overflow-wrap: anywhere; }
header p { color: #4b5563; margin: 0 0 8px; overflow-wrap: anywhere; }
nav.pages { margin: 10px 0; display: flex; flex-wrap: wrap; gap: 4px 10px; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e5e7eb;
         vertical-align: top; }
th { background: #f9fafb; }
td.name { max-width: 260px; overflow-wrap: anywhere; font-size: 14px; }
/* A fixed box per image: rows do not jump while lazy images arrive, any aspect ratio fits. */
img { display: block; width: 256px; height: 256px; object-fit: contain; background: #e5e7eb; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px;
       overflow-wrap: anywhere; }
.missing { color: #b91c1c; font-size: 13px; font-weight: 600; margin: 6px 0 0;
           overflow-wrap: anywhere; }
.empty { color: #6b7280; font-style: italic; }
"""
