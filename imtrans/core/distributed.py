"""Training on several processes (one per GPU) with DistributedDataParallel.

``torchrun`` starts one process per GPU and tells each its place through the environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`join` reads
it and joins the process group (NCCL on GPUs, gloo on the CPU); without those variables it
returns a single-process :class:`Distributed` that changes nothing. The fit loop then asks it to
wrap the networks, to tell it whether this process writes files (rank 0 alone does), to share
the run directory, and to agree on when to stop after a signal.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import inspect
import os
import signal
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd.grad_mode import _unsafe_preserve_version_counter
from torch.nn.parallel import DistributedDataParallel

from imtrans.core.stop_signals import StopSignals
from imtrans.errors import ImtransError

__all__ = ["Distributed", "GanDDP", "die_with_parent", "is_main_process", "join", "unwrap"]

#: How long a rank waits for the others at a collective. Rank 0 alone evaluates and writes
#: checkpoints while the other ranks wait at the next gradient reduction, so this is generous
#: (NCCL's default is 10 minutes; a full-size FID evaluation can take longer).
TIMEOUT = timedelta(minutes=60)

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

#: prctl(2) option: the signal a process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG = 1

# Sync buffers at every forward; newer torch renames broadcast_buffers.
_SYNC_BUFFERS = ({"forward_sync_buffers": True}
                 if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                 else {"broadcast_buffers": True})


class DistributedError(ImtransError):
    """The torchrun environment is incomplete or asks for a device this machine lacks."""


def is_main_process() -> bool:
    """True in the process that writes files and prints (rank 0, or the only process)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (checkpoints name tensors as without DDP)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


class GanDDP(DistributedDataParallel):
    """DistributedDataParallel for networks a GAN step calls in several roles.

    A forward without gradients (sampling, evaluation: rank 0 alone does those) and a
    forward while every parameter is frozen (the discriminator while the generator steps)
    call the network directly: there is nothing to reduce then, and DDP's per-forward
    buffer broadcast is a collective that a rank sampling alone would wait on forever.
    """

    solo_group: Any = None  # a group of this rank alone, for sync batch norm without peers

    def _sync_buffers(self) -> None:
        """DDP's per-forward buffer broadcast, hidden from autograd's version counters.

        A step calls a discriminator twice before one backward (on the fake, then on the
        real), and batch norm saves its running statistics for that backward; the second
        forward's broadcast writes them in place. On torch 2.11 that write bumped their
        version counters and the backward failed ("modified by an inplace operation ... is
        at version 4; expected version 3"); torch 2.13 wraps the broadcast as here. A
        training-mode backward never reads the running statistics, so the gradients are the
        same; on a torch that wraps it already, this wrap changes nothing.
        """
        with _unsafe_preserve_version_counter(tuple(self.module.buffers())):
            super()._sync_buffers()

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.module.parameters()):
            return super().forward(*inputs, **kwargs)
        if torch.is_grad_enabled() or self.solo_group is None:
            return self.module(*inputs, **kwargs)
        # Without gradients only this rank may be running: sync batch norm must not wait for
        # the others, so it normalises with this rank's batch, as a single process would.
        layers = [m for m in self.module.modules() if isinstance(m, nn.SyncBatchNorm)]
        groups = [m.process_group for m in layers]
        for layer in layers:
            layer.process_group = self.solo_group
        try:
            return self.module(*inputs, **kwargs)
        finally:
            for layer, group in zip(layers, groups, strict=True):
                layer.process_group = group


class Distributed:
    """This process's place among the training processes (one process: rank 0 of 1).

    Attributes:
        rank: This process's index among all processes.
        world_size: How many processes train together.
        device: The device this process trains on (``cuda:LOCAL_RANK`` on GPUs).
        owned: Whether :func:`join` created the process group (and :meth:`close` ends it).
    """

    def __init__(self, rank: int, world_size: int, device: torch.device,
                 owned: bool = False) -> None:
        self.rank, self.world_size, self.device, self.owned = rank, world_size, device, owned
        self._stop_flag = torch.zeros(1)
        self._stop_work: Any = None
        # With several processes the ranks agree on a stop one step later.
        self._stops = StopSignals(stop_at_once=not self.enabled,
                                  steps_to_agree=int(self.enabled))
        self._flag_group: Any = None
        self._solo_group: Any = None
        if self.enabled:
            # Stop requests travel on the CPU through gloo, so checking them never waits for
            # the GPU; each rank is in a one-rank group of its own for sampling alone.
            self._flag_group = dist.new_group(backend="gloo")
            self._solo_group, _ = dist.new_subgroups(group_size=1)

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True in the process that writes files (rank 0)."""
        return self.rank == 0

    def wrap(self, networks: dict[str, nn.Module]) -> dict[str, nn.Module]:
        """Wrap every network for gradient averaging (unchanged on one process).

        Networks built with ``norm = "syncbatch"`` keep synchronised batch norm on GPUs; on
        the CPU (which sync batch norm does not support) they fall back to plain batch norm,
        with statistics of each rank's own batch.
        """
        if not self.enabled:
            return networks
        wrapped: dict[str, nn.Module] = {}
        for name, network in networks.items():
            if any(isinstance(m, nn.SyncBatchNorm) for m in network.modules()):
                if self.device.type == "cuda":
                    network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
                else:
                    network = revert_sync_batchnorm(network)
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # broadcast_buffers: batch-norm running statistics follow rank 0, so every rank
            # holds (and a checkpoint saves) the same ones. find_unused_parameters stays off:
            # every trainable parameter gets a gradient in each backward, and frozen networks
            # skip DDP entirely (see GanDDP).
            ddp = GanDDP(network, device_ids=device_ids, find_unused_parameters=False,
                         **_SYNC_BUFFERS)  # type: ignore[arg-type]
            ddp.solo_group = self._solo_group
            wrapped[name] = ddp
        return wrapped

    def unwrapped(self, trainer: Any) -> Any:
        """``trainer`` as evaluation and export see it: its networks without DDP wrappers."""
        return _Unwrapped(trainer) if self.enabled else trainer

    def share_path(self, path: Path | None) -> Path:
        """Rank 0's ``path`` on every rank (rank 0 alone creates the run directory)."""
        if not self.enabled:
            assert path is not None
            return path
        box = [str(path) if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return Path(box[0])  # type: ignore[arg-type]

    def interrupts(self, on_request: Callable[[str], None] | None = None
                   ) -> contextlib.AbstractContextManager[None]:
        """Turn SIGTERM, SIGHUP and Ctrl-C (:data:`STOP_SIGNALS`) into a request to stop that
        :meth:`should_stop` reports, for the length of the ``with`` block (the handlers found
        are put back after it; see :class:`~imtrans.core.stop_signals.StopSignals`).

        Raising at once would end the step half done (one network updated, not the other),
        and with several processes would leave the other ranks waiting at a gradient
        reduction this rank never joins; instead the run stops after the step under way (all
        ranks agree on which). ``on_request`` hears of the first signal at once, with a line
        to show (how long the wait is, when long). A second Ctrl-C in one process raises
        ``KeyboardInterrupt`` there and then: the way out of a step that takes too long, at
        the price of that step.
        """
        return self._stops.installed(on_request)

    def should_stop(self) -> bool:
        """Whether any rank was signalled, agreed by all ranks at the same step.

        Called once per step: it reads the previous step's vote (a CPU all-reduce that ran
        meanwhile) and starts this step's, so it costs no wait on the GPU.
        """
        self._stops.step_ended()  # the host clock of the wait a stop notice announces
        if not self.enabled:
            return self._stops.requested
        stop = False
        if self._stop_work is not None:
            self._stop_work.wait()
            stop = bool(self._stop_flag.item())
        self._stop_flag = torch.tensor([float(self._stops.requested)])
        self._stop_work = dist.all_reduce(self._stop_flag, op=dist.ReduceOp.MAX,
                                          group=self._flag_group, async_op=True)
        return stop

    def decorrelate_rng(self, seed: int, step: int) -> None:
        """Give each rank other than 0 a random stream of its own (dropout, image pools,
        on-device augmentation), derived from the seed, the step and the rank.

        Rank 0 keeps the seeded (or resumed) stream, which is what checkpoints store.
        """
        if self.enabled and not self.is_main:
            torch.manual_seed((seed * 1_000_003 + step) * 1_009 + self.rank)

    def close(self) -> None:
        """Leave the process group, if :func:`join` joined it."""
        if self._stop_work is not None:
            self._stop_work.wait()
            self._stop_work = None
        if self.owned and dist.is_initialized():
            dist.destroy_process_group()
            self.owned = False


class _Unwrapped:
    """A trainer whose :meth:`modules` returns the networks inside their DDP wrappers."""

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    def modules(self) -> dict[str, nn.Module]:
        return {k: unwrap(m) for k, m in self._trainer.modules().items()}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trainer, name)


def join(device: torch.device) -> Distributed:
    """Join the process group torchrun describes, or return a single-process context.

    Args:
        device: The device the recipe selected; under torchrun, a GPU becomes
            ``cuda:LOCAL_RANK`` (one GPU per process).

    Raises:
        DistributedError: some torchrun variables are set but not all, or there are fewer
            GPUs than processes on this machine.
    """
    present = [k for k in _ENV if k in os.environ]
    if not present:
        return Distributed(0, 1, device)
    die_with_parent(signal.SIGTERM)  # torchrun killed outright must not leave ranks training
    if len(present) < len(_ENV):
        raise DistributedError(f"{', '.join(present)} set but not {', '.join(_ENV)}: "
                               "start several processes with torchrun")
    rank, world, local = (int(os.environ[k]) for k in _ENV)
    if world == 1:  # torchrun with one process trains as without it
        return Distributed(0, 1, device)
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise DistributedError(f"local rank {local} needs GPU {local}, but this machine "
                                   f"has {torch.cuda.device_count()}: start at most that many "
                                   "processes per machine (--nproc_per_node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=TIMEOUT, **kwargs)
        atexit.register(_destroy_if_initialized)  # an error before fit's end
    return Distributed(rank, world, device, owned=owned)


def die_with_parent(signum: int) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent ends (Linux only).

    A rank under torchrun whose torchrun is killed outright (SIGKILL, the out-of-memory
    killer) would otherwise go on training, holding its GPU, forever waiting at the next
    collective once another rank is gone. With SIGTERM, it stops as after any SIGTERM (after
    the step under way, rank 0 saving). Elsewhere (macOS, Windows) nothing is asked: a rank
    then ends at the collective's timeout (:data:`TIMEOUT`) at the latest.

    If the parent ended before the request, the signal never comes: then this process exits
    at once (status 1).
    """
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):  # a libc without prctl: nothing to ask for
        return
    if os.getppid() != parent:  # it ended between the look and the request
        os._exit(1)


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace SyncBatchNorm layers by BatchNorm2d with the same tensors (same state dict)."""
    if isinstance(module, nn.SyncBatchNorm):
        plain = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        plain.load_state_dict(module.state_dict())
        plain.train(module.training)
        return plain.to(next(iter(module.state_dict().values())).device)
    for name, child in module.named_children():
        replaced = revert_sync_batchnorm(child)
        if replaced is not child:
            setattr(module, name, replaced)
    return module


def _destroy_if_initialized() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
