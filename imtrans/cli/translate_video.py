"""``imtrans translate`` of video clips: a clip to a clip, or a folder of clips to a folder.

``imtrans translate`` hands its work here when its input is a video (:func:`~imtrans.inference.
video.is_video_input`); the frames are translated by :mod:`imtrans.inference.video`. Here: the
checks before any work (the video extra, the outputs' names, the no-overwrite rules), loading
the generator (``eval`` mode unless ``--mode`` says otherwise), a progress bar with frames/s
per clip, and one line per clip written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from imtrans.cli.output import stderr_console
from imtrans.cli.translator_loading import load_announced
from imtrans.errors import DataError

__all__ = ["translate_videos"]


class _FramesPerSecond(ProgressColumn):
    """The frames translated per second, once rich has measured a speed."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} frames/s")


def translate_videos(checkpoint: str, source: str, output: str, *, direction: str,
                     batch_size: int, device: str | None, mode: str, weights: str | None,
                     tile_size: int, tile_overlap: int, seed: int, overwrite: bool,
                     unused: dict[str, bool], precision: str = "fp32",
                     compile_network: bool = False) -> None:
    """Translate the clip (or folder of clips) ``source`` into ``output``.

    Args:
        mode: ``auto`` (``eval`` for video), ``eval`` or ``paper``.
        unused: Options of image translation given with a value other than their default
            (``--html``...): each is refused, as it means nothing for a clip.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (``--precision``).
        compile_network: Compile the generator (``--compile``).

    Raises:
        DataError: the video extra is missing, an option does not apply to video, an output
            is refused, or a clip cannot be read or written.
    """
    from imtrans.core.printable import printable_path
    from imtrans.inference.video import plan_videos, require_ffmpeg, translate_video

    require_ffmpeg()  # before anything else: the one thing to install
    given = [name for name, changed in unused.items() if changed]
    if given:
        raise DataError(f"{', '.join(given)} do(es) not apply to video input; leave "
                        f"{'them' if len(given) > 1 else 'it'} out")
    pairs = plan_videos(source, output)
    from imtrans.runs.output_guard import guard_outputs

    single = len(pairs) == 1 and Path(output) == pairs[0][1]
    record = guard_outputs([target for _, target in pairs],
                           Path(output).parent if single else Path(output), "translate",
                           overwrite=overwrite)
    mode = "eval" if mode == "auto" else mode
    console = stderr_console()
    translator = load_announced(console, f"{len(pairs)} clip(s)", checkpoint,
                                direction=direction, device=device, mode=mode,
                                compile_network=compile_network, tile_size=tile_size,
                                tile_overlap=tile_overlap, weights=weights, precision=precision)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        _FramesPerSecond(), TimeRemainingColumn(), console=console,
                        disable=not console.is_terminal)
    with progress:
        for clip, target in pairs:
            task = progress.add_task(printable_path(clip.name), total=None)
            started, advanced = _callbacks(progress, task)
            summary = translate_video(translator, clip, target, batch_size=batch_size,
                                      seed=seed, on_start=started, on_frames=advanced)
            progress.update(task, total=summary.frames, completed=summary.frames)
            record.add(target, "translate")
            console.print(Text(f"wrote {printable_path(target)}: {summary.frames} frames, "
                               f"{summary.width}x{summary.height} at {float(summary.fps):g} "
                               f"fps, in {summary.seconds:.1f} s "
                               f"({summary.frames_per_second:.1f} frames/s)"),
                          highlight=False)
    if len(pairs) > 1:
        console.print(Text(f"wrote {len(pairs)} clip(s) to {printable_path(output)}"),
                      highlight=False)


def _callbacks(progress: Progress, task: TaskID
               ) -> tuple[Callable[[int], None], Callable[[int], None]]:
    """``translate_video``'s ``on_start`` (the header's frame count: the bar's total, when it
    declares one) and ``on_frames`` (frames written) for the bar ``task``."""

    def started(expected: int) -> None:
        progress.update(task, total=expected or None)

    def advanced(done: int) -> None:
        progress.update(task, completed=done)

    return started, advanced
