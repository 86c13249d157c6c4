"""docs/quickstart.ipynb runs from top to bottom, so that it cannot rot.

The notebook is executed as a reader runs it (nbclient, a real IPython kernel of this Python),
with its ``parameters`` cell set to tiny settings: 4 steps at 32 px, networks 4 channels wide,
on the CPU. The kernel works in a temporary folder, not a clone: the notebook then finds the
recipe through the installed package and writes its run there.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("ipykernel.kernelspec")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "quickstart.ipynb"
STEPS = 4
#: Appended to the parameters cell (its own values run first, then these replace them).
TINY_PARAMETERS = f"""
# The suite's tiny settings
STEPS = {STEPS}
LOAD_SIZE = 36
CROP_SIZE = 32
EXTRA_SETTINGS = ["generator.ngf=4", "discriminator.ndf=4", "data.num_workers=0",
                  "run.device=cpu"]
"""


def cell(notebook: Any, cell_id: str) -> Any:
    """The notebook's cell of this id."""
    return next(c for c in notebook.cells if c.get("id") == cell_id)


def text_of(code_cell: Any) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for output in code_cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif "data" in output:
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def png_outputs(code_cell: Any) -> list[Any]:
    """The PNG images a code cell displayed, as PIL images."""
    from PIL import Image

    return [Image.open(io.BytesIO(base64.b64decode(output.data["image/png"])))
            for output in code_cell.outputs if "image/png" in output.get("data", {})]


def test_the_notebook_is_stored_clean_and_valid() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in cell(notebook, "parameters").metadata.get("tags", [])
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.fixture
def this_python_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``python3`` kernelspec that starts this interpreter, found before any other."""
    prefix = tmp_path / "jupyter"
    kernelspec.install(kernel_name="python3", prefix=str(prefix))
    monkeypatch.setenv("JUPYTER_PATH", str(prefix / "share" / "jupyter"))
    from jupyter_client.kernelspec import KernelSpecManager

    assert KernelSpecManager().get_kernel_spec("python3").argv[0] == sys.executable
    return "python3"


def test_the_quickstart_notebook_trains_reports_and_translates(
        tmp_path: Path, this_python_kernel: str) -> None:
    from PIL import Image

    import imtrans
    from imtrans.samples import sample_root

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = cell(notebook, "parameters")
    parameters.source += TINY_PARAMETERS
    work = tmp_path / "work"
    work.mkdir()
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name=this_python_kernel,
                                     resources={"metadata": {"path": str(work)}})
    client.execute()

    code = [c for c in notebook.cells if c.cell_type == "code"]
    executed = [c.execution_count for c in code if c.execution_count is not None]
    print(f"executed {len(executed)} of {len(code)} code cells")
    assert executed == list(range(1, len(code) + 1))
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]

    assert f"imtrans {imtrans.__version__} from {ROOT / 'imtrans'}" in text_of(
        cell(notebook, "install"))
    training = text_of(cell(notebook, "train"))
    assert "training on the bundled sample of monet2photo" in training
    assert f"step {STEPS}/{STEPS} (100%)" in training  # the progress line, updated in place
    run_dir = work / "runs" / "cyclegan_photo2monet"  # the kernel's folder, not the clone
    assert f"finished at step {STEPS}: runs/cyclegan_photo2monet " in training
    assert (run_dir / "checkpoints" / f"step_{STEPS:08d}.safetensors").is_file()

    report = cell(notebook, "report")
    assert f"step_{STEPS:08d}.png, columns: real A | fake B" in text_of(report)
    [grid] = png_outputs(report)
    assert grid.size == Image.open(run_dir / "samples" / f"step_{STEPS:08d}.png").size
    assert str((run_dir / "report.html").resolve()) in text_of(report)

    # The translate cell shows the first test photo beside what the run's generator makes of
    # it, pixel for pixel.
    [side_by_side] = png_outputs(cell(notebook, "translate"))
    samples = sample_root("monet2photo")
    assert samples is not None
    photo_path = sorted((samples / "testB").glob("*.jpg"))[0]
    photo = Image.open(photo_path).convert("RGB")
    painting = imtrans.load_translator(run_dir, device="cpu")(photo)
    assert side_by_side.size == (photo.width + 8 + painting.width, photo.height)
    shown = np.asarray(side_by_side.convert("RGB"))
    np.testing.assert_array_equal(shown[:, :photo.width], np.asarray(photo))
    np.testing.assert_array_equal(shown[:, photo.width + 8:], np.asarray(painting))
