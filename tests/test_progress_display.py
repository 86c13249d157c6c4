"""The live display of ``imtrans run`` on a narrow terminal: every loss term that fits (the
bar graphic, the elapsed time and the epoch give way first), and notices wrapped between
words."""

from __future__ import annotations

import io
import re

from rich.console import Console

from imtrans.cli.progress import RichProgress
from imtrans.core.eta import ProgressStatus

#: A CycleGAN run's loss terms, as its metrics records hold them.
CYCLEGAN_LOSSES = {"D_A": 0.3633784, "D_B": 0.4380716, "G": 14.799164, "G_adv": 1.7624400,
                   "cycle": 8.6375122, "identity": 4.3992124}
NOTICE = ("using the bundled sample of facades (data/facades is missing): the run trains on "
          "8 images, not the dataset; download it with: imtrans data download facades")
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _terminal(width: int) -> tuple[Console, io.StringIO]:
    """A terminal as ``imtrans run`` sees one (its stderr console: soft wrap, no colours)."""
    buffer = io.StringIO()
    return Console(file=buffer, width=width, force_terminal=True, color_system=None,
                   soft_wrap=True), buffer


def _last_bar(width: int, losses: dict[str, float]) -> str:
    console, buffer = _terminal(width)
    shown = RichProgress(console)
    shown.on_start(total_steps=200000, start_step=0, steps_per_epoch=1000, epochs=200,
                   images_per_step=1)
    shown.on_status(ProgressStatus(step=12345, total_steps=200000, epoch=13, epochs=200,
                                   images_per_sec=8.47, eta_seconds=23456.0, losses=losses))
    shown.on_end()  # draws the last frame
    last = buffer.getvalue().split("\x1b[2K")[-1]
    return CONTROL.sub("", last).rstrip("\n")


def test_at_80_columns_the_losses_keep_their_room_and_whole_terms() -> None:
    bar = _last_bar(80, CYCLEGAN_LOSSES)
    assert len(bar) < 80
    assert bar.split() == ["12345/200000", "8.5", "img/s", "eta", "6:30:56", "D_A", "0.363",
                           "D_B", "0.438", "G", "14.8", "G_adv", "1.76", "…"]
    # At 120 columns the bar graphic alone gives way, and every term fits.
    bar = _last_bar(120, CYCLEGAN_LOSSES)
    assert "━" not in bar and bar.startswith("epoch 13/200 ") and " 0:00:00 eta 6:30:56 " in bar
    assert bar.endswith("D_A 0.363 D_B 0.438 G 14.8 G_adv 1.76 cycle 8.64 identity 4.4")


def test_a_wide_terminal_shows_every_column_as_before() -> None:
    bar = _last_bar(200, CYCLEGAN_LOSSES)
    assert bar.startswith("epoch 13/200 ━") and " 0:00:00 eta 6:30:56 " in bar
    assert bar.endswith("D_A 0.363  D_B 0.438  G 14.8  G_adv 1.76  cycle 8.64  identity 4.4")


def test_notices_wrap_between_words_on_a_terminal_and_stay_whole_in_a_file() -> None:
    console, buffer = _terminal(80)
    RichProgress(console).message(NOTICE)
    lines = CONTROL.sub("", buffer.getvalue()).splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert " ".join(line.rstrip() for line in lines) == NOTICE  # no word cut in two
    piped = io.StringIO()
    RichProgress(Console(file=piped, width=80, soft_wrap=True)).message(NOTICE)
    assert piped.getvalue() == NOTICE + "\n"
