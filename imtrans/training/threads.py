"""How many CPU threads torch computes with in a training process (``run.threads``).

Torch starts one intra-op thread per core and splits every convolution among them; the threads
of one operation wait for each other at its end. When a core is taken by something else (the
run's own data loading processes, another job), each operation waits for the thread that got
no core, and a step slows many times over: on a 2-core machine with one core busy, a CycleGAN
step at 64 px took 33-34 s with torch's 2 threads and 3.5-4.3 s with one. So a training process
takes the cores it may use (its affinity: taskset, containers), shared among the processes of
a torchrun on this machine, minus its data loading processes, and at least one.

An explicit ``run.threads`` (``--threads``) wins; otherwise an ``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS`` in the environment (torch has read it already) is the user's choice and
is kept. The inter-op pool is left alone: eager training runs nothing on it (it serves
``torch.jit.fork``), and its size can be set only once per process, which a library call
should not take from its caller.

Example:
    >>> choice = choose_threads("auto", workers=1, cores=2, environ={})
    >>> choice.threads, choice.notice
    (1, 'threads: 1 torch thread (2 usable CPU cores, 1 data loading process; set run.threads or --threads to change)')
"""  # noqa: E501

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from imtrans.data.batches import StreamedBatches, TrainingData
from imtrans.data.workers import usable_cores

__all__ = ["AUTO_MARK", "ENVIRONMENT", "ThreadChoice", "choose_threads", "torch_threads",
           "training_threads"]

#: The variables torch reads its thread count from at start (the later one wins in torch).
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: Set by ``imtrans run --nproc`` for its ranks when the user set neither variable: torchrun
#: then sets ``OMP_NUM_THREADS=1`` for each rank, which is torchrun's choice, not the user's.
AUTO_MARK = "IMTRANS_AUTO_THREADS"

_CHANGE = "set run.threads or --threads to change"


@dataclass(frozen=True)
class ThreadChoice:
    """Torch's intra-op threads for a run, and the line that says why.

    Attributes:
        threads: The thread count (>= 1).
        notice: One line for the console and ``train.log``.
        from_environment: The environment chose it: torch already uses it; nothing is set.
    """

    threads: int
    notice: str
    from_environment: bool = False


def choose_threads(setting: int | str, *, workers: int, processes: int = 1,
                   cores: int | None = None, environ: Mapping[str, str] | None = None,
                   torch_threads_now: int | None = None) -> ThreadChoice:
    """Decide torch's intra-op threads for one training process.

    Args:
        setting: ``run.threads``: ``"auto"`` or a count >= 1.
        workers: The data loading processes of this process while it trains (0 when batches
            are loaded in it or held on the device).
        processes: The training processes on this machine (torchrun's local world size).
        cores: The usable CPU cores (default: this process's affinity).
        environ: The environment (default: ``os.environ``).
        torch_threads_now: Torch's thread count, reported when the environment chose it
            (default: ``torch.get_num_threads()``).

    Returns:
        The choice: an explicit setting, at most the cores of this process; else the
        environment's; else this process's share of the cores minus ``workers``, at least 1.
    """
    cores = usable_cores() if cores is None else cores
    environ = os.environ if environ is None else environ
    share = max(1, cores // max(1, processes))
    per_process = " per process" if processes > 1 else ""
    if setting != "auto":
        asked = int(setting)
        if asked > share:
            return ThreadChoice(share, f"threads: {_threads(share)}{per_process} (run.threads "
                                f"= {asked} is more than the {_cores(share)}{per_process}; "
                                f"using {share})")
        return ThreadChoice(asked, f"threads: {_threads(asked)}{per_process} (run.threads = "
                            f"{asked})")
    given = _environment_choice(environ)
    if given is not None:
        now = torch.get_num_threads() if torch_threads_now is None else torch_threads_now
        return ThreadChoice(now, f"threads: {_threads(now)}{per_process} ({given} in the "
                            f"environment, kept over the automatic choice; {_CHANGE})",
                            from_environment=True)
    threads = max(1, share - workers)
    among = f" among {processes} processes" if processes > 1 else ""
    each = " each" if processes > 1 else ""
    loaders = f"{workers} data loading process{'es' if workers != 1 else ''}{each}"
    return ThreadChoice(threads, f"threads: {_threads(threads)}{per_process} "
                        f"({_cores(cores)}{among}, {loaders}; {_CHANGE})")


def training_threads(setting: int | str, data: TrainingData | None,
                     processes: int = 1) -> ThreadChoice:
    """:func:`choose_threads` for a built training: its data loading processes counted
    (none when the images are held on the device, whose loaders ended once they were
    decoded); ``processes`` is the number of training processes (torchrun's local world size,
    read from ``LOCAL_WORLD_SIZE`` when it is set)."""
    batches = data.batches if data is not None else None
    workers = batches.loader.num_workers if isinstance(batches, StreamedBatches) else 0
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    if processes > 1 and local.isdigit() and int(local) >= 1:
        processes = int(local)  # several machines: only this one's processes share its cores
    return choose_threads(setting, workers=workers, processes=processes)


@contextmanager
def torch_threads(choice: ThreadChoice) -> Iterator[ThreadChoice]:
    """Compute with ``choice.threads`` intra-op threads inside the block; torch's count before
    it is restored after (a notebook that trains keeps its own setting)."""
    before = torch.get_num_threads()
    if not choice.from_environment and choice.threads != before:
        torch.set_num_threads(choice.threads)
    try:
        yield choice
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _environment_choice(environ: Mapping[str, str]) -> str | None:
    """``NAME=value`` of the variable torch took its thread count from, if one is set to a
    count; a value that is not one (torch ignores it) counts as unset, and so does torchrun's
    own default under ``imtrans run --nproc`` (:data:`AUTO_MARK`)."""
    if environ.get(AUTO_MARK):
        return None
    given = None
    for name in ENVIRONMENT:  # torch reads MKL_NUM_THREADS after OMP_NUM_THREADS
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            given = f"{name}={int(value)}"
    return given


def _threads(count: int) -> str:
    return f"{count} torch thread{'s' if count != 1 else ''}"


def _cores(count: int) -> str:
    return f"{count} usable CPU core{'s' if count != 1 else ''}"
