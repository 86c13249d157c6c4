"""The suite's summary table as rows of text: what each run reached and what held it back.

Example:
    >>> record = {"case": "pix2pix_b1", "mode": "fp32_eager", "batch_size": 1,
    ...           "images_per_sec": 80.0, "target_images_per_sec": 250.0, "meets_target": None,
    ...           "data_wait_fraction": 0.01, "peak_memory_bytes": None,
    ...           "achieved_tflops": 0.5, "fraction_of_peak": None}
    >>> dict(zip(COLUMNS, summary_rows([record], cuda=False)[0]))["result"]
    'n/a (cpu)'
"""

from __future__ import annotations

from typing import Any

__all__ = ["COLUMNS", "bound_by", "ran_on_cuda", "summary_rows"]

COLUMNS = ("case", "mode", "batch", "img/s", "target", "result", "data wait", "peak mem",
           "TFLOP/s", "of peak", "bound by")

#: Above this share of the step spent waiting for the next batch, the data is the limit.
DATA_BOUND = 0.05
#: At this fraction of the device's peak or above, the arithmetic is the limit.
COMPUTE_BOUND = 0.5


def summary_rows(records: list[dict[str, Any]], *, cuda: bool,
                 size: str = "full") -> list[tuple[str, ...]]:
    """One row of :data:`COLUMNS` per run record (sweep summaries are left out: their
    runs have rows of their own).

    Args:
        records: The suite's records.
        cuda: Whether the suite ran on a GPU (targets are judged there only).
        size: ``tiny`` or ``full``: tiny runs are never judged against the targets.
    """
    rows: list[tuple[str, ...]] = []
    for record in records:
        if "best_batch_size" in record or "case" not in record:
            continue
        target = record.get("target_images_per_sec")
        base = (record["case"], record["mode"], _text(record.get("batch_size")))
        if "skipped" in record or "error" in record:
            why = "skipped (deadline)" if "skipped" in record else _short(record["error"])
            rows.append((*base, "", _number(target), why, "", "", "", "", ""))
            continue
        rows.append((*base, _number(record["images_per_sec"]), _number(target),
                     _result(record, cuda, size), f"{record['data_wait_fraction']:.1%}",
                     _gib(record.get("peak_memory_bytes")),
                     f"{record['achieved_tflops']:.3g}", _percent(record.get("fraction_of_peak")),
                     bound_by(record)))
    return rows


def ran_on_cuda(records: list[dict[str, Any]]) -> bool:
    """Whether any run of ``records`` trained on a CUDA device."""
    return any(str(r.get("settings", {}).get("device", "")).startswith("cuda") for r in records)


def bound_by(record: dict[str, Any]) -> str:
    """A first guess at what limited a run: ``data`` (waiting for batches), ``compute`` (near
    the device's peak), ``overhead`` (a GPU far from its peak: kernel launches, small
    kernels, memory traffic), or blank where no peak is known (the CPU)."""
    if record["data_wait_fraction"] > DATA_BOUND:
        return "data"
    fraction = record.get("fraction_of_peak")
    if fraction is None:
        return ""
    return "compute" if fraction >= COMPUTE_BOUND else "overhead"


def _result(record: dict[str, Any], cuda: bool, size: str) -> str:
    if record.get("target_images_per_sec") is None:
        return ""
    if not cuda:
        return "n/a (cpu)"
    if size != "full" or record.get("meets_target") is None:
        return "n/a (tiny)"
    return "PASS" if record["meets_target"] else "FAIL"


def _short(error: str, limit: int = 60) -> str:
    return "error: " + (error if len(error) <= limit else error[:limit - 3] + "...")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _gib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**30:.2f} GiB"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"
