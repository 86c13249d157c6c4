"""The ``imtrans demo`` command: a browser page to try a trained model, or a folder to share it.

A thin command over :mod:`imtrans.inference.demo_app` (the page) and
:mod:`imtrans.inference.space_writer` (``--write-app``). gradio is imported here, when the
command runs, never when ``imtrans`` or another command is imported: it takes seconds.
"""

from __future__ import annotations

import click
from rich.text import Text

from imtrans.cli.existing_path import ExistingPath
from imtrans.cli.output import stdout_console
from imtrans.errors import ImtransError

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "demo"]

#: Where the page listens by default: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860

MISSING_GRADIO = "imtrans demo needs the demo extra: pip install 'imtrans[demo]'"


@click.command("demo")
@click.argument("checkpoint", type=ExistingPath())
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535),
              help="Port the page listens on.")
@click.option("--host", default=DEFAULT_HOST, show_default=True,
              help="Address the page listens on (0.0.0.0: every interface, so other machines "
                   "can open it).")
@click.option("--device", default=None, help="cuda, cuda:1, cpu... (default: CUDA if present).")
@click.option("--write-app", "write_app", type=click.Path(file_okay=False), default=None,
              help="Write a self-contained app (app.py, the TorchScript generators, "
                   "requirements.txt, README.md) into this new folder instead of serving: it "
                   "runs with `python app.py` or as a HuggingFace Space, without imtrans.")
@click.option("--weights", type=click.Choice(["ema", "raw"]), default=None,
              help="With --write-app: the weights exported (default: ema when the checkpoint "
                   "holds one, else raw). The page offers both.")
@click.option("--overwrite", is_flag=True,
              help="With --write-app: write into a folder that is not empty, replacing the "
                   "app's files.")
def demo(checkpoint: str, port: int, host: str, device: str | None, write_app: str | None,
         weights: str | None, overwrite: bool) -> None:
    """Serve a page that translates uploaded images with the generator of CHECKPOINT (a
    checkpoint file or a run directory, whose newest checkpoint is used): each input beside
    its output, the direction, EMA or raw weights, and the precision to choose. It listens on
    127.0.0.1 (this machine) unless --host says otherwise and is never shared publicly;
    Ctrl+C stops it. With --write-app DIR, write an app to share instead."""
    console = stdout_console()
    if write_app is not None:
        from imtrans.inference.space_writer import write_space

        written = write_space(checkpoint, write_app, weights=weights, overwrite=overwrite)
        console.print(Text(f"wrote {written.folder}: "
                           f"{', '.join(path.name for path in written.files)} "
                           f"(step {written.step}, {written.weights} weights)"),
                      highlight=False)
        console.print(Text(f"run it with: cd {written.folder} && pip install -r "
                           "requirements.txt && python app.py"), highlight=False)
        return
    try:
        import gradio  # noqa: F401  (checked before the checkpoint is read)
    except ImportError:
        raise ImtransError(MISSING_GRADIO) from None
    from imtrans.core.device import parse_device
    from imtrans.core.heap import keep_freed_memory
    from imtrans.inference.demo_app import DemoModel, build_demo

    parse_device(device, "--device")  # a bad name fails before the page starts
    keep_freed_memory()  # each upload allocates the same activations again
    model = DemoModel.open(checkpoint, device=device)
    page = build_demo(model)
    shown_host = f"[{host}]" if ":" in host else host
    console.print(Text(f"{model.title} ({', '.join(model.directions)}; "
                       f"{' or '.join(model.weights)} weights; "
                       f"{' or '.join(model.precisions)})"), highlight=False)
    try:
        # share=False always: a public gradio.live link is not what a demo of a private model
        # should open by accident.
        page.launch(server_name=host, server_port=port, share=False, quiet=True,
                    show_error=True, prevent_thread_lock=True)
    except OSError:  # gradio's "Cannot find empty port" names its own internals
        raise ImtransError(f"cannot listen on {shown_host}:{port}: the port is in use, or the "
                           "address is not one of this machine's; choose another --port or "
                           "--host") from None
    console.print(Text(f"open http://{shown_host}:{port} (Ctrl+C stops it)"), highlight=False)
    page.block_thread()  # until Ctrl+C, which closes the server
