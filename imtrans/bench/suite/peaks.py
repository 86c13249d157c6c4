"""Peak dense TFLOP/s of the GPUs the suite is meant for, to say how close a run came.

From NVIDIA's data sheets, dense (without 2:4 sparsity). PyTorch runs fp32 convolutions on
tensor cores as TF32 when ``torch.backends.cudnn.allow_tf32`` is on (its default), so an fp32
run is compared with the TF32 peak then, else with the plain fp32 one.

Example:
    >>> peak_tflops("NVIDIA H100 80GB HBM3", "bf16")
    989.4
    >>> peak_tflops("NVIDIA H100 PCIe", "fp32", tf32=False)
    51.2
    >>> peak_tflops("cpu (x86_64)", "bf16") is None
    True
"""

from __future__ import annotations

__all__ = ["PEAKS", "peak_tflops"]

#: (name fragment, bf16, tf32, fp32), most specific first: the first fragment found in
#: ``torch.cuda.get_device_name`` wins ("H100 PCIe" before "H100").
PEAKS: tuple[tuple[str, float, float, float], ...] = (
    ("H200 NVL", 835.5, 417.5, 60.0),
    ("H200", 989.4, 494.7, 66.9),
    ("H100 NVL", 835.5, 417.5, 60.0),
    ("H100 PCIe", 756.5, 378.0, 51.2),
    ("H100", 989.4, 494.7, 66.9),      # SXM: "NVIDIA H100 80GB HBM3"
    ("A100", 312.0, 156.0, 19.5),
)


def peak_tflops(device_name: str, precision: str, *, tf32: bool = True) -> float | None:
    """The peak dense TFLOP/s of ``device_name`` for ``precision`` (``fp32`` or ``bf16``).

    Args:
        device_name: ``torch.cuda.get_device_name()``, or the benchmark's ``device`` field.
        precision: The run's ``speed.precision``.
        tf32: Whether fp32 convolutions may use TF32 tensor cores.

    Returns:
        The peak, or None for a device not in :data:`PEAKS` (the CPU included).
    """
    lowered = device_name.lower()
    for fragment, bf16, tf32_peak, fp32 in PEAKS:
        if fragment.lower() in lowered:
            if precision == "bf16":
                return bf16
            return tf32_peak if tf32 else fp32
    return None
