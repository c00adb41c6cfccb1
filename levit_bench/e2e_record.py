"""An entry's end-to-end part (issue 24, ``run --input jpeg``): the figures of the JPEG path,
kept in ``Entry.end_to_end`` (schema 6) beside the compute-only figures of the same entry.

Three parts.  ``serial``: one item per decoder, a call being one batch read → decoded →
transformed → stacked → (copied, on CUDA) → inferred → top-5, each stage timed by consecutive
clock reads inside the call, so the stages of one call add up to that call exactly; each stage's
mean per image (the figures that add up to the serial time), with the order-statistic interval of
its round means like every figure's over rounds (``stats``), and its median.
``pipeline``: one item per decoder × decode-thread count, decode workers feeding inference; a
sample is the time between two batches' completions; per-image latency from the moment a file is
handed to the workers to its batch's top-5; the share of time inference waited for images says
which side bounds it.  ``decoders``: each decoder's check against Pillow (``jpeg.check_decoder``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .stats import latency_percentiles, median_time_interval, split_rounds

#: the serial path's stages, in order (``copy``: the pinned host-to-device copy, CUDA only)
STAGES = ("read", "decode", "transform", "batch", "copy", "inference", "top5")
#: the stages run by the pipeline's decode workers; the others run on the inference thread
DECODE_SIDE = ("read", "decode", "transform")
#: the stage times must add up to the serial call's within this fraction (else a note: a stage untimed)
ADDITIVITY_TOLERANCE = 0.05
#: the inference thread waiting for images more than this share of the time: decode bounds the pipeline
DECODE_BOUND_WAIT = 0.10


def _round_means_interval(samples: Sequence[float], calls: Sequence[int], scale: float) -> list[float]:
    """The order-statistic 95% interval over rounds of a stage's per-round mean (``stats``)."""
    means = [np.array([r.mean()]) for r in split_rounds(list(samples), list(calls)) if r.size]
    lo, hi = median_time_interval(means)
    return [lo * scale, hi * scale]


def serial_record(decoder: str, samples_s: Sequence[float], calls: Sequence[int], stages: dict[str, list[float]],
                  images_per_call: int) -> dict:
    """The serial item of one decoder: images/s (median call) with its interval; each stage's mean
    ms per image (the figures that add up: every call is the sum of its stages, so the stage means
    sum to the mean call; ``stages_sum_ratio`` checks it, and a stage left untimed would show) with
    the interval of its round means, its median, and its share; and how far the stage medians,
    which need not add up, are from the median call (``stages_median_ratio``)."""
    x = np.asarray(samples_s, dtype=float)
    med = float(np.median(x))
    lo, hi = median_time_interval(split_rounds(list(x), list(calls)))
    per_image_ms = 1000.0 / images_per_call
    figures = {}
    for name in STAGES:
        s = stages.get(name)
        if not s:
            continue
        figures[name] = {"ms_per_image": float(np.mean(s)) * per_image_ms,
                         "ci95_ms": _round_means_interval(s, calls, per_image_ms),
                         "median_ms_per_image": float(np.median(s)) * per_image_ms}
    total = sum(f["ms_per_image"] for f in figures.values())
    for f in figures.values():
        f["share"] = f["ms_per_image"] / total if total else None
    mean_call_ms = float(x.mean()) * per_image_ms
    median_sum = sum(f["median_ms_per_image"] for f in figures.values())
    largest = max(figures, key=lambda k: figures[k]["ms_per_image"]) if figures else None
    return {"decoder": decoder, "images_per_second": images_per_call / med, "ci95": [images_per_call / hi,
            images_per_call / lo], "ms_per_image": med * per_image_ms, "mean_ms_per_image": mean_call_ms,
            "stages": figures, "stages_sum_ratio": total / mean_call_ms if mean_call_ms else None,
            "stages_median_ratio": median_sum / (med * per_image_ms) if med else None, "largest_stage": largest,
            "images_per_call": images_per_call, "samples_s": [float(v) for v in x], "calls": list(calls),
            "stage_samples_s": {k: [float(v) for v in s] for k, s in stages.items() if s}}


def adds_up(serial: dict) -> bool:
    """Whether the stage times add up to the serial call's time within the tolerance."""
    r = serial.get("stages_sum_ratio")
    return r is not None and abs(r - 1.0) <= ADDITIVITY_TOLERANCE


def pipeline_record(decoder: str, decode_threads: int, inference_threads: int, samples_s: Sequence[float],
                    calls: Sequence[int], images_per_call: int, latencies_s: Sequence[float],
                    waits_s: Sequence[float], decode_stage: str | None = None) -> dict:
    """The overlapped pipeline at one decode/inference thread split: images/s with its interval,
    per-image latency percentiles (distribution-free bounds), and the side that bounds it."""
    x = np.asarray(samples_s, dtype=float)
    med = float(np.median(x))
    lo, hi = median_time_interval(split_rounds(list(x), list(calls)))
    wait_share = float(np.sum(waits_s)) / float(x.sum()) if x.sum() > 0 else 0.0
    bound = "decode" if wait_share > DECODE_BOUND_WAIT else "inference"
    return {"decoder": decoder, "decode_threads": decode_threads, "inference_threads": inference_threads,
            "images_per_second": images_per_call / med, "ci95": [images_per_call / hi, images_per_call / lo],
            "latency_ms": latency_percentiles(latencies_s), "inference_wait_share": wait_share,
            "bounding_stage": bound, "bounding_words": bounding_words(bound, wait_share, decode_stage),
            "images_per_call": images_per_call, "samples_s": [float(v) for v in x], "calls": list(calls)}


def bounding_words(bound: str, wait_share: float, decode_stage: str | None) -> str:
    if bound == "decode":
        within = f"; its largest stage: {decode_stage}" if decode_stage else ""
        return f"decode workers (read+decode+transform): inference waited {wait_share:.0%} of the time{within}"
    return f"inference (batch+inference+top-5): it waited for images {wait_share:.0%} of the time"


def best(records: Sequence[dict]) -> dict | None:
    """The fastest of some serial or pipeline records (by images/s)."""
    found = [r for r in records if r.get("images_per_second")]
    return max(found, key=lambda r: r["images_per_second"]) if found else None


def end_to_end(input_facts: dict, decoders: dict[str, dict], serial: list[dict], pipeline: list[dict],
               notes: list[str]) -> dict:
    """``Entry.end_to_end`` as a results file keeps it."""
    b = best(pipeline) or best(serial)
    return {"input": input_facts, "decoders": decoders, "serial": serial, "pipeline": pipeline,
            "images_per_second": b["images_per_second"] if b else None, "notes": list(notes)}
