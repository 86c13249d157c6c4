"""The GAN and LSGAN targets are cached per layout: same numbers, no allocation after the first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn

from imtrans.losses import adversarial
from imtrans.losses.adversarial import LSGANLoss, VanillaGANLoss, gan_loss, lsgan_loss


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    adversarial._TARGETS.clear()
    yield
    adversarial._TARGETS.clear()


def uncached_gan(logits: Tensor, real: bool, smoothing: float = 0.0) -> Tensor:
    """The formula as it was before the cache."""
    target = torch.full_like(logits, 1.0 - smoothing) if real else torch.zeros_like(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, target)


def uncached_lsgan(logits: Tensor, real: bool) -> Tensor:
    make = torch.ones_like if real else torch.zeros_like
    return nn.functional.mse_loss(logits, make(logits))


def layouts() -> list[Tensor]:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(3, 2, 30, 30, generator=generator)
    return [base, base.to(memory_format=torch.channels_last), base.double(), base.bfloat16(),
            base.half(), base[:, :1], base.transpose(2, 3), torch.randn((), generator=generator),
            torch.randn(7, generator=generator)]


@pytest.mark.parametrize("index", range(len(layouts())))
@pytest.mark.parametrize("real", [True, False])
def test_losses_and_gradients_equal_the_uncached_formula_bit_for_bit(
    index: int, real: bool
) -> None:
    logits = layouts()[index]
    for _ in range(2):  # the first call fills the cache, the second reads it
        for smoothing in (0.0, 0.1):
            assert torch.equal(gan_loss(logits, real, label_smoothing=smoothing),
                               uncached_gan(logits, real, smoothing))
        assert torch.equal(lsgan_loss(logits, real), uncached_lsgan(logits, real))
    if logits.dtype == torch.float32:
        ours, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
        (gan_loss(ours, real, label_smoothing=0.1) + lsgan_loss(ours, real)).backward()
        (uncached_gan(theirs, real, 0.1) + uncached_lsgan(theirs, real)).backward()
        assert torch.equal(ours.grad, theirs.grad)


def test_a_second_call_allocates_no_target(monkeypatch: pytest.MonkeyPatch) -> None:
    logits = torch.randn(2, 1, 30, 30, requires_grad=True)
    lsgan_loss(logits, True)
    assert len(adversarial._TARGETS) == 1
    (target,) = adversarial._TARGETS.values()
    assert torch.equal(target, torch.ones(2, 1, 30, 30)) and not target.requires_grad

    made = []
    real_full_like = torch.full_like

    def counting_full_like(*args: object, **kwargs: object) -> Tensor:
        made.append(args)
        return real_full_like(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "full_like", counting_full_like)
    for _ in range(3):
        lsgan_loss(logits, True)
        LSGANLoss().generator_loss(logits).backward()
    assert made == [] and len(adversarial._TARGETS) == 1
    assert next(iter(adversarial._TARGETS.values())) is target
    # Targets of equal value are shared between the losses: 0 for fake, 1 for real.
    lsgan_loss(logits, False)
    gan_loss(logits, False)
    gan_loss(logits, True)
    assert len(made) == 1 and len(adversarial._TARGETS) == 2
    VanillaGANLoss(label_smoothing=0.1).discriminator_loss(logits, logits)
    assert len(made) == 2 and sorted(key[-1] for key in adversarial._TARGETS) == [0.0, 0.9, 1.0]


def test_the_cache_is_bounded_and_keeps_the_recently_used() -> None:
    first = torch.zeros(1, 1, 1, 1)
    lsgan_loss(first, True)
    for size in range(2, 2 + adversarial._TARGET_CACHE_SIZE + 4):
        lsgan_loss(torch.zeros(1, 1, size, size), True)
        lsgan_loss(first, True)  # used every step: never the one evicted
    assert len(adversarial._TARGETS) == adversarial._TARGET_CACHE_SIZE
    shapes = [key[0] for key in adversarial._TARGETS]
    assert (1, 1, 1, 1) in shapes and (1, 1, 2, 2) not in shapes
    assert (1, 1, 21, 21) in shapes


def test_layouts_dtypes_and_values_have_their_own_targets() -> None:
    seen = set()
    for logits in layouts():
        lsgan_loss(logits, True)
        lsgan_loss(logits, False)
        seen.update(adversarial._TARGETS)
        for (shape, stride, dtype, _, value), target in adversarial._TARGETS.items():
            assert (shape, stride, dtype) == (tuple(logits.shape), logits.stride(), logits.dtype)
            # The layout full_like gives (dense, logits' order: a slice's target is packed).
            assert target.stride() == torch.full_like(logits, value).stride()
            assert target.dtype == dtype and bool((target == value).all())
        adversarial._TARGETS.clear()
    assert len(seen) == 2 * len(layouts())


def test_compiled_losses_take_no_graph_break_and_bypass_the_cache() -> None:
    torch._dynamo.reset()

    def objective(logits: Tensor) -> Tensor:
        return (lsgan_loss(logits, True) + lsgan_loss(logits, False)
                + gan_loss(logits, True, label_smoothing=0.1) + gan_loss(logits, False))

    compiled = torch.compile(objective, fullgraph=True, backend="eager")
    logits = torch.randn(2, 1, 8, 8)
    expected = (uncached_lsgan(logits, True) + uncached_lsgan(logits, False)
                + uncached_gan(logits, True, 0.1) + uncached_gan(logits, False))
    assert torch.equal(compiled(logits), expected)
    assert len(adversarial._TARGETS) == 0  # the compiled graph builds its targets itself
    explanation = torch._dynamo.explain(objective)(logits)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    torch._dynamo.reset()


def test_a_target_cached_in_inference_mode_serves_a_later_backward() -> None:
    net = nn.Conv2d(3, 1, 3)
    images = torch.randn(2, 3, 10, 10)
    with torch.inference_mode():
        evaluated = lsgan_loss(net(images), True) + gan_loss(net(images), False)
    assert len(adversarial._TARGETS) == 2
    assert not any(target.is_inference() for target in adversarial._TARGETS.values())

    loss = lsgan_loss(net(images), True) + gan_loss(net(images), False)
    loss.backward()  # an inference tensor saved for backward would raise here
    assert torch.equal(loss.detach(), evaluated)
    grads = [p.grad.clone() for p in net.parameters()]  # type: ignore[union-attr]
    net.zero_grad()
    (uncached_lsgan(net(images), True) + uncached_gan(net(images), False)).backward()
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, net.parameters(), strict=True))
    assert len(adversarial._TARGETS) == 2


def test_a_target_cached_under_no_grad_serves_training_too() -> None:
    logits = torch.randn(4, 1, 6, 6, requires_grad=True)
    with torch.no_grad():
        lsgan_loss(logits, True)
    lsgan_loss(logits, True).backward()
    reference = logits.detach().clone().requires_grad_()
    uncached_lsgan(reference, True).backward()
    assert logits.grad is not None and torch.equal(logits.grad, reference.grad)


def test_tensor_subclasses_bypass_the_cache() -> None:
    class Tagged(Tensor):
        pass

    logits = torch.randn(2, 1, 4, 4).as_subclass(Tagged)
    assert torch.equal(lsgan_loss(logits, True), uncached_lsgan(logits, True))
    assert len(adversarial._TARGETS) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_targets_are_cached_and_graph_capture_bypasses_them() -> None:
    logits = torch.randn(2, 1, 30, 30, device="cuda")
    assert torch.equal(lsgan_loss(logits, True), uncached_lsgan(logits, True))
    assert len(adversarial._TARGETS) == 1
    adversarial._TARGETS.clear()
    static = torch.randn(2, 1, 30, 30, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        lsgan_loss(static, False)  # warm-up outside capture: cached
    torch.cuda.current_stream().wait_stream(stream)
    adversarial._TARGETS.clear()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = lsgan_loss(static, False)
    assert len(adversarial._TARGETS) == 0
    static.copy_(torch.ones_like(static))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, torch.ones((), device="cuda"))
