"""What the oldest supported torch (the floor in pyproject.toml, 2.11) needs a fallback for,
and the line a switch torch cannot honour is refused with.

Each fallback keeps newer torch exactly as it was: the DDP buffer broadcast changes no number
(its gradients are compared bit for bit here), and the compiler settings apply only before
torch 2.13. CI runs these on the floor too (``pytest -m floor``).
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from click.testing import CliRunner
from conftest import cli_error
from torch import nn

from imtrans.cli import cli
from imtrans.core.distributed import GanDDP
from imtrans.training import speed
from imtrans.training.speed import compiler_settings

pytestmark = pytest.mark.floor

ROOT = Path(__file__).resolve().parents[1]
CYCLEGAN = str(ROOT / "recipes" / "cyclegan_photo2monet.toml")


def _discriminator() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
                         nn.Conv2d(4, 1, 3))


def _two_calls_then_backward(network: nn.Module, fake: torch.Tensor, real: torch.Tensor
                             ) -> dict[str, torch.Tensor]:
    """A discriminator's loss as a GAN step makes it: two forwards, then one backward."""
    loss = network(fake).square().mean() + (network(real) - 1).square().mean()
    loss.backward()
    plain = network.module if isinstance(network, GanDDP) else network
    return {name: p.grad for name, p in plain.named_parameters() if p.grad is not None}


def test_a_ddp_discriminator_called_twice_backwards_with_the_plain_gradients(
        tmp_path: Path) -> None:
    # torch 2.11's DDP bumped the batch-norm statistics' version at the second forward's
    # buffer broadcast, and this backward failed ("modified by an inplace operation").
    plain = _discriminator()
    wrapped_net = copy.deepcopy(plain)
    fake, real = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    dist.init_process_group("gloo", init_method=(tmp_path / "group").as_uri(), rank=0,
                            world_size=1)
    try:
        wrapped = GanDDP(wrapped_net)
        got = _two_calls_then_backward(wrapped, fake, real)
    finally:
        dist.destroy_process_group()
    want = _two_calls_then_backward(plain, fake, real)
    assert got.keys() == want.keys() and len(want) == 6
    assert all(torch.equal(got[name], want[name]) for name in want)
    for ours, theirs in zip(wrapped_net.buffers(), plain.buffers(), strict=True):
        assert torch.equal(ours, theirs)  # the running statistics saw both calls


def _pool_query(from_pool: torch.Tensor, pool_index: torch.Tensor, image_index: torch.Tensor,
                pool: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """The image pool's query as a bf16 channels-last step compiles it (ImagePool.query)."""
    images = torch.tanh(generated).float()
    mask = from_pool.view(-1, 1, 1, 1)
    out = torch.where(mask, pool.index_select(0, pool_index),
                      images.index_select(0, image_index))
    return out.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)


@pytest.mark.skipif(speed._TORCH_RELEASE >= speed._CPU_TILE_FIXED,
                    reason="the CPU compiler settings apply before torch 2.13 only")
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                    reason="torch.compile on the CPU needs a C++ compiler")
def test_the_pool_query_compiles_on_the_cpu_under_the_compiler_settings(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Without the settings torch 2.11 fails to build this kernel (CppCompileError: "'tmp6'
    # was not declared in this scope"), as it failed CycleGAN's whole-step compile at batch 1.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch._dynamo.reset()
    generated = torch.randn(1, 3, 32, 32).to(torch.bfloat16).contiguous(
        memory_format=torch.channels_last)
    args = (torch.tensor([True]), torch.tensor([7]), torch.tensor([0]),
            torch.randn(51, 3, 32, 32), generated)
    with compiler_settings(torch.device("cpu")):
        compiled = torch.compile(_pool_query, fullgraph=True)(*args)
    assert torch.equal(compiled, _pool_query(*args))
    assert torch.equal(compiled, args[3][7:8].to(torch.bfloat16))  # the stored image drawn


def test_the_compiler_settings_touch_nothing_but_the_cpu_before_torch_2_13(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import torch._inductor.config as inductor_config

    before = inductor_config.cpp.simdlen
    for release, cpu_scalar in (((2, 11), True), ((2, 13), False), ((3, 0), False)):
        monkeypatch.setattr(speed, "_TORCH_RELEASE", release)
        with compiler_settings(torch.device("cpu")):
            assert (inductor_config.cpp.simdlen == 0) is cpu_scalar, release
        with compiler_settings(torch.device("cuda")):
            assert inductor_config.cpp.simdlen == before
        assert inductor_config.cpp.simdlen == before  # restored after the compile


def test_validate_refuses_a_whole_step_compile_this_torch_cannot_trace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "_compiler_traces_backward", lambda: False)
    result = CliRunner().invoke(cli, ["validate", CYCLEGAN, "--set", "run.device=cpu",
                                      "--set", 'speed.compile="step"'])
    release = torch.__version__.split("+")[0]
    line = cli_error(result)
    assert f"unsupported on torch {release}: needs torch >= 2.11" in line, line
    assert line.startswith('error: speed.compile = "step"') and 'compile = "networks"' in line
