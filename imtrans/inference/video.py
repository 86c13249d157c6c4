"""Translating video clips frame by frame: decode, translate in batches, encode.

Clips are read and written through ``imageio-ffmpeg`` (the ``video`` extra, whose wheel carries
an ``ffmpeg`` binary): frames are decoded to 8-bit RGB (or gray, for one-channel runs),
translated ``batch_size`` at a time with :meth:`Translator.translate_batch
<imtrans.inference.translator.Translator.translate_batch>`, and encoded at the input's frame
rate and size, one output frame per input frame. The codec follows the output's extension:
VP9 for ``.webm``, H.264 otherwise (CRF 18, visually near lossless). Clips of even width and
height are written in the 4:2:0 chroma layout every player reads; H.264 cannot hold 4:2:0 at
an odd side, so clips with one are written in 4:4:4 at their exact size (no padding, no crop;
some browsers and QuickTime do not play 4:4:4). Audio is not kept.

A clip that cannot be decoded (not a video, its index lost to truncation) or that ends well
before the length its header declares (truncated after the index) is an error; the output is
written under a temporary name and renamed only when complete and checked (its frame count
read back), so a failure leaves no partial file.

Example:
    >>> translator = load_translator("runs/cyclegan", mode="eval")  # doctest: +SKIP
    >>> translate_video(translator, Path("in.mp4"), Path("out.mp4"))  # doctest: +SKIP
    VideoSummary(frames=120, width=640, height=360, fps=Fraction(30, 1), seconds=14.2)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from imtrans.core.atomic import TEMP_PREFIX, atomic_path
from imtrans.core.paths import refuse_overwrite
from imtrans.core.printable import printable_path
from imtrans.data.images import IMAGE_EXTENSIONS
from imtrans.errors import DataError
from imtrans.inference.translator import Translator, to_uint8

__all__ = ["VIDEO_EXTENSIONS", "VIDEO_EXTRA_MISSING", "VideoSummary", "find_videos",
           "is_video_input", "plan_videos", "require_ffmpeg", "translate_video",
           "write_video"]

#: File extensions read and written as video clips.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"})

#: The error when the ``video`` extra is not installed.
VIDEO_EXTRA_MISSING = "translating video needs the video extra: pip install 'imtrans[video]'"

#: A clip that decodes to fewer frames than this share of what its header declares (duration
#: times frame rate) is taken as truncated. The header's duration is the longest stream's (an
#: audio track may outlast the video by a few frames), so the check leaves that room.
_TRUNCATED_SHARE = 0.9

#: Encoder options per output extension: constant quality, visually near lossless.
_X264 = ("libx264", ["-crf", "18", "-preset", "medium"])
#: VP9 at libvpx's default speed (cpu-used 0) took 46 s for a 300-frame 320x240 clip that
#: H.264 wrote in 18 s; cpu-used 4 with row threads took 20 s.
_VP9 = ("libvpx-vp9", ["-crf", "30", "-b:v", "0", "-deadline", "good", "-cpu-used", "4",
                       "-row-mt", "1"])


@dataclass(frozen=True)
class VideoSummary:
    """What translating one clip did."""

    frames: int
    width: int
    height: int
    fps: Fraction
    seconds: float

    @property
    def frames_per_second(self) -> float:
        """Frames translated (decoded, translated and encoded) per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def require_ffmpeg() -> ModuleType:
    """The ``imageio_ffmpeg`` module.

    Raises:
        DataError: the ``video`` extra is not installed (:data:`VIDEO_EXTRA_MISSING`).
    """
    try:
        import imageio_ffmpeg  # type: ignore[import-untyped]
    except ImportError:
        raise DataError(VIDEO_EXTRA_MISSING) from None
    return imageio_ffmpeg


def is_video(path: Path) -> bool:
    """Whether ``path``'s extension is a video clip's."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def find_videos(folder: Path) -> list[Path]:
    """The clips under ``folder`` (recursively, sorted, temporary files left out)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [Path(root, name) for name in sorted(files)
                  if is_video(Path(name)) and not name.startswith(TEMP_PREFIX)]
    return found


def is_video_input(source: str) -> bool:
    """Whether ``imtrans translate`` should treat ``source`` as video: a file with a video
    extension, or a folder that holds clips and no images (a folder with images is translated
    as images, as before video was read)."""
    path = Path(source)
    if path.is_dir():
        return bool(find_videos(path)) and not _holds_images(path)
    return is_video(path)


def _holds_images(folder: Path) -> bool:
    """Whether any file under ``folder`` has an image extension."""
    return any(Path(name).suffix.lower() in IMAGE_EXTENSIONS
               for _, _, files in os.walk(folder) for name in files)


def plan_videos(source: str | Path, output: str | Path) -> list[tuple[Path, Path]]:
    """Pair each clip with its output: one clip to a file named with a video extension (or into
    a folder, under its own name); a folder's clips into the output folder, under the same
    relative names.

    Raises:
        DataError: the input is missing or holds no clip, the output of a single clip is
            neither a video name nor a folder, or an output would replace an input or lie
            inside the input folder.
    """
    source, output = Path(source), Path(output)
    trees: list[Path] = []
    if source.is_dir():
        clips = find_videos(source)
        if not clips:
            raise DataError(f"no video clips found in {source} (looked for "
                            f"{', '.join(sorted(VIDEO_EXTENSIONS))})")
        if is_video(output) and not output.is_dir():
            raise DataError(f"output {output} is a file name but {source} is a folder of "
                            f"{len(clips)} clip(s); give a folder")
        pairs = [(clip, output / clip.relative_to(source)) for clip in clips]
        trees = [source]
        refuse_overwrite([], [output], trees=trees)
    elif source.is_file():
        if is_video(output) and not output.is_dir():
            pairs = [(source, output)]
        elif output.suffix and not output.is_dir():
            raise DataError(f"output {output} is not a video file name (give one ending in "
                            f"{', '.join(sorted(VIDEO_EXTENSIONS))}) or a folder")
        else:
            pairs = [(source, output / source.name)]
    else:
        raise DataError(f"input {source} does not exist")
    sources = [clip for clip, _ in pairs]
    refuse_overwrite(sources, [target for _, target in pairs], trees=trees, sources=sources)
    return pairs


def translate_video(translator: Translator, source: Path, target: Path, *,
                    batch_size: int = 8, seed: int = 0,
                    on_start: Callable[[int], None] | None = None,
                    on_frames: Callable[[int], None] | None = None) -> VideoSummary:
    """Translate the clip ``source`` into ``target``, frame by frame, in batches.

    Args:
        translator: The generator (``mode="eval"`` is recommended for video: frames are then
            translated independently and deterministically, without dropout noise that
            changes from frame to frame).
        source: A video file ffmpeg can read.
        target: The output; its extension picks the container and codec.
        batch_size: Frames translated together.
        seed: Seeds dropout in ``paper`` mode, so a run repeats exactly.
        on_start: Called once with the frame count the header declares (an estimate).
        on_frames: Called with the number of frames written so far, after each batch.

    Raises:
        DataError: the video extra is missing, the run's generator is not 1- or 3-channel,
            the clip cannot be decoded or is truncated, or the output cannot be written
            (``target`` is then left as it was).
    """
    ffmpeg = require_ffmpeg()
    for channels, side in ((translator.in_channels, "reads"),
                           (translator.out_channels, "writes")):
        if channels not in (1, 3):
            raise DataError(f"video needs a generator that {side} 1 or 3 channels; this one "
                            f"{side} {channels}")
    started = time.perf_counter()
    torch.manual_seed(seed)
    reader, width, height, fps, expected = _open(ffmpeg, source, translator.in_channels)
    if on_start:
        on_start(expected)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with atomic_path(target) as partial:
            # ffmpeg picks the container by the name's extension: the temporary name keeps it.
            named = partial.with_name(partial.name + target.suffix)
            try:
                writer = _writer(ffmpeg, named, width, height, fps, translator.out_channels)
                try:
                    for batch in _batches(reader, source, batch_size, width, height,
                                          translator.in_channels):
                        frames = torch.stack([translator.to_network(frame) for frame in batch])
                        outputs = translator.translate_batch(frames.to(translator.device))
                        for image in to_uint8(outputs.cpu()).permute(0, 2, 3, 1).numpy():
                            writer.send(np.ascontiguousarray(image).tobytes())
                        written += len(batch)
                        if on_frames:
                            on_frames(written)
                finally:
                    writer.close()
                _check_clip(source, written, expected)
                _check_written(ffmpeg, named, written)
                os.replace(named, partial)
            finally:
                named.unlink(missing_ok=True)
    except OSError as exc:  # imageio-ffmpeg's own carry ffmpeg's command after a first line
        reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot write {printable_path(target)}: {reason}") from None
    finally:
        reader.close()
    return VideoSummary(written, width, height, fps, time.perf_counter() - started)


def write_video(path: Path, frames: list[np.ndarray], fps: float | Fraction) -> None:
    """Encode ``H x W x 3`` (or ``H x W``) ``uint8`` frames into ``path`` as
    :func:`translate_video` encodes its outputs (same codec, settings and chroma layout)."""
    ffmpeg = require_ffmpeg()
    height, width = frames[0].shape[:2]
    channels = 1 if frames[0].ndim == 2 or frames[0].shape[2] == 1 else 3
    writer = _writer(ffmpeg, path, width, height, _exact_rate(float(fps)), channels)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame).tobytes())
    finally:
        writer.close()


#: ``imageio_ffmpeg.read_frames``: decoded frames as bytes, until closed or at the end.
_Frames = Generator[bytes, None, None]


def _open(ffmpeg: ModuleType, source: Path, channels: int
          ) -> tuple[_Frames, int, int, Fraction, int]:
    """Start decoding ``source``: the frame iterator, width, height, frame rate and the frame
    count the header declares (0 when it declares no duration)."""
    pix_fmt, bits = ("gray", 8) if channels == 1 else ("rgb24", 24)
    # -map 0:v:0: the first video stream only (a clip may hold several, or cover art).
    reader = ffmpeg.read_frames(str(source), pix_fmt=pix_fmt, bits_per_pixel=bits,
                                output_params=["-map", "0:v:0"])
    # A clip with rotation metadata is decoded upright, and imageio-ffmpeg logs a warning that
    # the frames' size differs from the stream's: expected here, not the user's concern.
    logger = logging.getLogger("imageio_ffmpeg")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        meta: dict[str, Any] = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        reader.close()
        raise DataError(f"cannot read the video {printable_path(source)}: "
                        f"{_ffmpeg_reason(str(exc))}") from None
    finally:
        logger.setLevel(level)
    width, height = (int(side) for side in meta["size"])
    rate = float(meta.get("fps") or 0)
    if rate <= 0 or width <= 0 or height <= 0:
        reader.close()
        raise DataError(f"cannot read the video {printable_path(source)}: no frame rate or "
                        "size in its header")
    expected = round(float(meta.get("duration") or 0) * rate)
    return reader, width, height, _exact_rate(rate), expected


def _batches(reader: _Frames, source: Path, batch_size: int, width: int, height: int,
             channels: int) -> Iterator[list[np.ndarray]]:
    """The decoded frames as ``H x W x C`` ``uint8`` arrays, ``batch_size`` at a time."""
    batch: list[np.ndarray] = []
    while True:
        try:
            data = next(reader)
        except StopIteration:
            break
        except RuntimeError as exc:  # a frame cut short: the file ends inside it
            raise DataError(f"the video {printable_path(source)} ends inside a frame: "
                            f"{_ffmpeg_reason(str(exc))}") from None
        batch.append(np.frombuffer(data, np.uint8).reshape(height, width, channels))
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _check_clip(source: Path, frames: int, expected: int) -> None:
    """Refuse a clip that decoded to no frames, or to far fewer than its header declares."""
    if frames == 0:
        raise DataError(f"cannot read the video {printable_path(source)}: no frame could be "
                        "decoded (truncated or damaged)")
    if frames < _TRUNCATED_SHARE * expected - 1:
        raise DataError(f"the video {printable_path(source)} is truncated: {frames} frame(s) "
                        f"decoded of the {expected} its header declares")


def _check_written(ffmpeg: ModuleType, path: Path, frames: int) -> None:
    """Read the encoded file's frame count back: ffmpeg's writer does not report an encoder
    that failed, which would otherwise leave an empty or short clip."""
    try:
        counted, _ = ffmpeg.count_frames_and_secs(str(path))
    except RuntimeError as exc:
        raise DataError(f"the encoder failed: {_ffmpeg_reason(str(exc))}") from None
    if counted != frames:
        raise DataError(f"the encoder wrote {counted} frame(s) of {frames}")


def _writer(ffmpeg: ModuleType, path: Path, width: int, height: int, fps: Fraction,
            channels: int) -> Any:
    """A started ``imageio_ffmpeg.write_frames`` generator for ``path``."""
    codec, options = _VP9 if path.suffix.lower() == ".webm" else _X264
    # 4:2:0 halves the chroma planes, which needs even sides; 4:4:4 keeps an odd size exact.
    layout = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    writer = ffmpeg.write_frames(str(path), (width, height),
                                 pix_fmt_in="gray" if channels == 1 else "rgb24",
                                 pix_fmt_out=layout, fps=fps, codec=codec, quality=None,
                                 macro_block_size=1, ffmpeg_log_level="error",
                                 output_params=list(options))
    writer.send(None)  # start ffmpeg
    return writer


def _exact_rate(rate: float) -> Fraction:
    """The frame rate as a fraction: ffmpeg prints NTSC rates rounded (29.97 for 30000/1001)."""
    for base in (24, 30, 60, 120):
        if abs(rate - base * 1000 / 1001) < 0.005:
            return Fraction(base * 1000, 1001)
    return Fraction(rate).limit_denominator(1001)


def _ffmpeg_reason(text: str) -> str:
    """The last line of ffmpeg's log that says what went wrong, or the message's first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        lowered = line.lower()
        if any(word in lowered for word in ("invalid", "not found", "error", "no such",
                                            "could not", "end of file")):
            return line.split("] ", 1)[-1]
    return lines[0] if lines else "ffmpeg failed"
