"""Bounded work and failing writes in ``export`` and ``translate``.

A size a user or a file gives (``export --check-size``, an image's declared width and height)
is checked against a memory budget before anything of that size is allocated; a write the
system refuses (a device as the output, a full disk, the file size limit) ends with one
``error: cannot write FILE: reason`` line, exit status 1, no temporary file, and any existing
file at the target unchanged.
"""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from conftest import cli_error

from imtrans.cli import cli
from imtrans.inference import export as export_module

#: Runs the ``imtrans`` command line given as arguments, then prints the peak resident memory
#: in bytes of this process and of its children (decoding workers), the larger (Linux
#: reports ``ru_maxrss`` in KiB).
_MEASURED_CLI = textwrap.dedent("""
    import resource, sys
    from imtrans.cli import main
    sys.argv = ["imtrans", *sys.argv[1:]]
    try:
        main()
    finally:
        peak = 1024 * max(resource.getrusage(who).ru_maxrss
                          for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        print(f"peak-rss {peak}", file=sys.stderr)
""")

#: Peak memory of a refused command: Python, torch and a tiny generator take about 0.5 GiB;
#: the refused work would have taken tens of GiB (an image) or terabytes (a check size).
_SMALL_PEAK = 1536 * 2**20


def invoke(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def measured(*args: object, timeout: float = 120,
             limit_file_size: int | None = None) -> tuple[int, list[str], int]:
    """Run ``imtrans ARGS`` in a fresh process; its exit code, its output lines (the peak
    line left out) and its peak resident memory in bytes."""
    def limit() -> None:
        if limit_file_size is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    env = dict(os.environ, OMP_NUM_THREADS="1", IMTRANS_DISABLE_PLUGIN_AUTOLOAD="1",
               COLUMNS="500")
    done = subprocess.run([sys.executable, "-c", _MEASURED_CLI, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env,
                          preexec_fn=limit)
    lines = (done.stdout + done.stderr).splitlines()
    peak = next(int(line.split()[1]) for line in lines if line.startswith("peak-rss "))
    return done.returncode, [line for line in lines if not line.startswith("peak-rss ")], peak


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def earlier_export(run: Path, folder: Path, format_: str) -> tuple[Path, bytes]:
    """A file an earlier export wrote (so replacing it needs no --overwrite), and its bytes."""
    target = folder / f"generator.{'pt' if format_ == 'torchscript' else 'onnx'}"
    result = invoke("export", run, "--format", format_, "-o", target)
    assert result.exit_code == 0, result.output
    return target, target.read_bytes()


# --- export: failing writes ------------------------------------------------------------------


def test_export_to_a_device_is_refused_before_any_work(pix2pix_run: Path) -> None:
    before = set(os.listdir("/dev"))
    error = cli_error(invoke("export", pix2pix_run, "--format", "torchscript",
                             "-o", "/dev/full"))
    assert error == ("error: output /dev/full is a character device, not a regular file; "
                     "give the name of a file to write")
    assert set(os.listdir("/dev")) == before  # no temporary beside the device


def test_export_through_a_link_to_a_device_is_refused(pix2pix_run: Path,
                                                      tmp_path: Path) -> None:
    link = tmp_path / "g.pt"
    link.symlink_to("/dev/null")
    error = cli_error(invoke("export", pix2pix_run, "--format", "torchscript", "-o", link))
    assert error == (f"error: output {link} is a character device, not a regular file; "
                     "give the name of a file to write")
    assert os.readlink(link) == "/dev/null" and temporaries(tmp_path) == []


@pytest.mark.parametrize("format_", ["torchscript", "onnx"])
def test_export_on_a_full_disk_keeps_the_old_file_and_leaves_no_temporary(
        pix2pix_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        format_: str) -> None:
    if format_ == "onnx":
        pytest.importorskip("onnxruntime")
    target, before = earlier_export(pix2pix_run, tmp_path, format_)
    writes: list[int] = []

    def full_disk(path: Path, data: bytes) -> None:
        # Half the bytes reach the disk, then the disk is full.
        writes.append(len(data))
        with open(path, "xb") as handle:
            handle.write(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export_module, "_write_file", full_disk)
    error = cli_error(invoke("export", pix2pix_run, "--format", format_, "-o", target))
    assert error == f"error: cannot write {target}: No space left on device"
    assert writes and writes[0] > 1000  # the whole model went through the failing write
    assert target.read_bytes() == before
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("format_", ["torchscript", "onnx"])
def test_export_past_the_file_size_limit_is_one_line(pix2pix_run: Path, tmp_path: Path,
                                                     format_: str) -> None:
    """A real refusal by the kernel (RLIMIT_FSIZE: EFBIG) in a fresh process. TorchScript's
    own C++ writer used to abort the process here, leaving its temporary file."""
    if format_ == "onnx":
        pytest.importorskip("onnxruntime")
    target, before = earlier_export(pix2pix_run, tmp_path, format_)
    code, lines, _ = measured("export", pix2pix_run, "--format", format_, "-o", target,
                              limit_file_size=20_000)
    assert code == 1, lines
    assert lines[-1] == f"error: cannot write {target}: File too large", lines
    assert not any("Traceback" in line or "frame #" in line for line in lines), lines
    assert target.read_bytes() == before
    assert temporaries(tmp_path) == []


# --- export: sizes from the command line -----------------------------------------------------


def test_a_huge_check_size_is_refused_before_it_is_allocated(pix2pix_run: Path,
                                                             tmp_path: Path) -> None:
    target = tmp_path / "g.pt"
    code, lines, peak = measured("export", pix2pix_run, "--format", "torchscript",
                                 "-o", target, "--check-size", "100000")
    assert code == 1, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: --check-size 100000: checking the export on "
                               "100032x100032 inputs needs at least "), lines
    assert "above the memory budget of " in lines[0] and "--max-memory" in lines[0], lines
    assert peak < _SMALL_PEAK, peak
    assert not target.exists() and temporaries(tmp_path) == []


def test_the_check_size_budget_is_the_max_memory_option(pix2pix_run: Path,
                                                        tmp_path: Path) -> None:
    """64 px fits in any machine's default budget, but not in 1 MiB; 1 MiB says so."""
    target = tmp_path / "g.pt"
    error = cli_error(invoke("export", pix2pix_run, "--format", "torchscript", "-o", target,
                             "--check-size", "64", "--max-memory", "1M"))
    assert error.startswith("error: --check-size 64: checking the export on 64x64 inputs "
                            "needs at least ")
    assert error.endswith("above the memory budget of 1.0 MiB (--max-memory); choose a "
                          "smaller --check-size or raise --max-memory")
    assert not target.exists()
    result = invoke("export", pix2pix_run, "--format", "torchscript", "-o", target,
                    "--check-size", "64", "--max-memory", "2G")
    assert result.exit_code == 0, result.output
    assert target.is_file()


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "1.5.5G", "1Q"])
def test_max_memory_takes_a_size(pix2pix_run: Path, tmp_path: Path, text: str) -> None:
    result = invoke("export", pix2pix_run, "--format", "torchscript", "-o", tmp_path / "g.pt",
                    "--max-memory", text)
    assert result.exit_code == 2, result.output
    assert "--max-memory" in result.output and "Traceback" not in result.output


# --- translate: image pixels -----------------------------------------------------------------


def constant_png(path: Path, width: int, height: int, bit_depth: int = 16) -> Path:
    """A gray PNG of ``width x height`` zeros, written row by row with zlib (a 9000 x 9000
    16-bit one is a few hundred KB on disk and 155 MiB decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    row = bytes(1 + -(-width * bit_depth // 8))  # filter type 0, then the zero samples
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def huge_pngs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """9000 x 9000 zeros in 16 and in 1 bit: 81 Mpx, under Pillow's bomb limit (89 Mpx)."""
    folder = tmp_path_factory.mktemp("huge")
    return {depth: constant_png(folder / f"huge{depth}.png", 9000, 9000, depth)
            for depth in (16, 1)}


@pytest.mark.parametrize(("depth", "mode"), [(16, "I;16"), (1, "1")])
def test_a_huge_image_named_alone_is_refused_from_its_header(
        pix2pix_run: Path, huge_pngs: dict[int, Path], tmp_path: Path, depth: int,
        mode: str) -> None:
    image = huge_pngs[depth]
    assert image.stat().st_size < 400_000
    out = tmp_path / "out.png"
    code, lines, peak = measured("translate", pix2pix_run, image, out, "--max-memory", "1G",
                                 "--workers", 1, "--device", "cpu")
    assert code == 1, lines
    error = lines[-1]
    assert error.startswith(f"error: cannot translate {image}: 9000x9000 pixels ({mode}) "
                            "would take about "), lines
    assert (" to translate, above the memory budget of 1.0 GiB; raise it with --max-memory "
            "(e.g. --max-memory ") in error, lines
    assert error.endswith("G) or shrink the image"), lines
    assert not any("Traceback" in line for line in lines), lines
    assert peak < _SMALL_PEAK, peak  # nothing was decoded: 81 Mpx would take GBs
    assert not out.exists()


def small_images(folder: Path, count: int, size: tuple[int, int] = (32, 32)) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"small{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        Image.new("RGB", size, (40 * i, 90, 200)).save(path)
    return paths


def test_a_huge_image_among_others_is_skipped_and_counted(
        pix2pix_run: Path, huge_pngs: dict[int, Path], tmp_path: Path) -> None:
    inputs = tmp_path / "photos"
    small_images(inputs, 2)
    huge = inputs / "huge.png"
    huge.write_bytes(huge_pngs[16].read_bytes())
    out = tmp_path / "out"
    code, lines, peak = measured("translate", pix2pix_run, inputs, out, "--max-memory", "1G",
                                 "--workers", 1, "--device", "cpu")
    assert code == 0, lines
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: skipped {huge}: 9000x9000 pixels (I;16) would take about "), lines
    assert lines[-1] == f"wrote 2 image(s) to {out}; skipped 1 file(s) (1 beyond the memory " \
                        "budget)", lines
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".png") == [
        "small0.png", "small1.png"]
    assert peak < _SMALL_PEAK, peak


def test_the_default_budget_is_three_quarters_of_the_memory_available(
        pix2pix_run: Path, huge_pngs: dict[int, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from imtrans.inference import budget

    monkeypatch.setattr(budget, "available_memory", lambda: 2 * 2**30)
    assert budget.default_budget() == 3 * 2**29
    error = cli_error(invoke("translate", pix2pix_run, huge_pngs[16], tmp_path / "out.png",
                             "--workers", 0, "--device", "cpu"))
    assert "above the memory budget of 1.5 GiB; raise it with --max-memory" in error
    assert not (tmp_path / "out.png").exists()


def batch_shapes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shape of each batch the translator is given from now on, in order."""
    from imtrans.inference.translator import Translator

    shapes: list[tuple[int, ...]] = []
    original = Translator.translate_batch

    def recorded(self: Translator, images: object) -> object:
        shapes.append(tuple(images.shape))  # type: ignore[attr-defined]
        return original(self, images)  # type: ignore[arg-type]

    monkeypatch.setattr(Translator, "translate_batch", recorded)
    return shapes


def test_an_image_to_tile_is_translated_alone_and_within_the_budget(
        pix2pix_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images of one size are batched, except those large enough to be tiled: a batch of
    eight of those would take eight times what the budget counted for one."""
    from PIL import Image


    inputs = tmp_path / "photos"
    small_images(inputs, 3, (64, 64))
    small_images(inputs / "big", 3, (200, 130))
    shapes = batch_shapes(monkeypatch)
    result = invoke("translate", pix2pix_run, inputs, tmp_path / "out", "--tile", 128,
                    "--workers", 0, "--device", "cpu", "--max-memory", "1G")
    assert result.exit_code == 0, result.output
    assert sorted(shapes) == [(1, 3, 130, 200)] * 3 + [(3, 3, 64, 64)]
    assert Image.open(tmp_path / "out" / "big" / "small0.png").size == (200, 130)


def test_an_overlap_above_half_the_tile_is_refused(pix2pix_run: Path, tmp_path: Path) -> None:
    """--tile 64 --overlap 63 moved each tile by one pixel: a 9000 px side made 80 million
    tiles. At most half the tile, no pixel is translated more than four times."""
    inputs = tmp_path / "photos"
    small_images(inputs, 1, (300, 200))
    error = cli_error(invoke("translate", pix2pix_run, inputs, tmp_path / "out", "--tile", 64,
                             "--overlap", 63, "--workers", 0, "--device", "cpu"))
    assert error == "error: tile overlap must be in [0, 32] (half the tile of 64), got 63"
    assert not (tmp_path / "out").exists()
    result = invoke("translate", pix2pix_run, inputs, tmp_path / "out", "--tile", 64,
                    "--overlap", 32, "--workers", 0, "--device", "cpu")
    assert result.exit_code == 0, result.output


def test_a_batch_holds_only_the_images_that_fit_in_the_budget_together(
        pix2pix_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--tile 4096 --batch-size 8 ran a batch of eight whole images at once, whatever their
    size: now a batch holds as many as the budget allows (here two)."""
    from imtrans.inference import load_translator
    from imtrans.inference.budget import ImageBudget

    translator = load_translator(pix2pix_run, device="cpu", tile_size=4096)
    budget = ImageBudget.for_generator(translator.generator, 3, 3, translator.size_multiple,
                                       translator.tile_size, 1)
    each, whole = budget.translating(256, 192), budget.estimate(256, 192, "RGB")
    limit = max(whole, 5 * each // 2)
    assert limit < 3 * each  # two fit together, three do not
    inputs = tmp_path / "photos"
    small_images(inputs, 5, (256, 192))
    shapes = batch_shapes(monkeypatch)
    result = invoke("translate", pix2pix_run, inputs, tmp_path / "out", "--tile", 4096,
                    "--batch-size", 8, "--workers", 0, "--device", "cpu",
                    "--max-memory", limit)
    assert result.exit_code == 0, result.output
    assert shapes == [(2, 3, 192, 256), (2, 3, 192, 256), (1, 3, 192, 256)]


def test_an_opset_newer_than_onnx_knows_is_refused_before_any_work(
        pix2pix_run: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    newest = onnx.defs.onnx_opset_version()
    error = cli_error(invoke("export", pix2pix_run, "--format", "onnx", "-o",
                             tmp_path / "g.onnx", "--opset", 1_000_000_000))
    assert error == (f"error: ONNX opset 1000000000 is newer than the newest this onnx "
                     f"package knows ({newest}); ask for {newest} or older, or leave the "
                     "opset out")
    assert list(tmp_path.iterdir()) == []
