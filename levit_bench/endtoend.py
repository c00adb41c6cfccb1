"""From JPEG to label (issue 24, ``run --input jpeg[:DIR]``): the end-to-end items a run times
beside each entry's compute-only call, in the same rounds (``schedule.run_rounds``).

Per prepared entry and accepted decoder, a *serial* item: one call is one batch of files read →
decoded (``jpeg.DECODERS``) → transformed with the model's own eval transform (``data.eval_transform``,
what ``accuracy`` uses) → stacked → (pinned host-to-device copy, CUDA only) → inferred (the
runner's call, logits back as float32) → top-5; each stage between two clock reads.  And per
decode-thread count a *pipeline* item: ``decode_threads`` worker threads (Pillow, libjpeg-turbo
and the transform release the GIL) read, decode and transform files, at most :data:`DEPTH`
batches ahead, while this thread batches, infers and takes the top-5 with the runtime's own
threads.  Files are taken in turn, cycling over the set.  Before the rounds, an untimed pass over
every file (padded like ``accuracy``'s last batch) gives top-1/top-5 when the set is labelled.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import data, jpeg
from .accuracy import correct_counts, pad_batch
from .backends.base import Runner
from .e2e_record import DECODE_SIDE, adds_up, end_to_end, pipeline_record, serial_record
from .errors import UserError
from .harness import TimingOptions
from .schedule import Timed, warm

#: batches the decode workers may run ahead of inference
DEPTH = 2
TOPK = 5


@dataclass
class EndToEnd:
    """The JPEG input of a run, opened and checked once: the files, each decoder's check, the
    decoders that may be timed, and the decode-thread counts to sweep."""

    spec: jpeg.JpegInput
    files: jpeg.JpegSet
    decoders: dict[str, dict]  # name -> check (``jpeg.check_decoder``), or why it cannot run
    device: str

    @property
    def accepted(self) -> list[str]:
        return [n for n, c in self.decoders.items() if c.get("accepted")]

    def refusals(self) -> list[str]:
        """One line per decoder that is not timed, with its figure or reason."""
        return [f"decoder {n} not timed: {c['reason']}" for n, c in self.decoders.items() if not c.get("accepted")]


def open_input(spec: jpeg.JpegInput, cache_root: Path, device: str) -> EndToEnd:
    """The set opened (generated once where no folder is given) and every decoder checked against
    Pillow; UserError where the set has no readable JPEG or no decoder may be timed."""
    files = jpeg.open_input(spec, cache_root)
    checks = {}
    for name in spec.decoders:
        why = jpeg.unavailable(name, device)
        checks[name] = {"accepted": False, "reason": why} if why else jpeg.check_decoder(name, files)
    e2e = EndToEnd(spec, files, checks, device)
    if not e2e.accepted:
        raise UserError("--input jpeg: no decoder may be timed (" + "; ".join(e2e.refusals()) + ")")
    return e2e


class _Path:
    """What both item kinds share: the set, the decoder, the transform, the runner, a file cursor."""

    def __init__(self, e2e: EndToEnd, decoder: str, transform: Callable, runner: Runner, batch_size: int):
        self.decoder, self.files, self.decode, self.transform = decoder, e2e.files.paths, jpeg.DECODERS[decoder], transform
        self.runner, self.batch_size, self.cursor = runner, batch_size, 0
        self.device = torch.device(e2e.device)

    def next_paths(self) -> list[Path]:
        n = len(self.files)
        out = [self.files[(self.cursor + j) % n] for j in range(self.batch_size)]
        self.cursor = (self.cursor + self.batch_size) % n
        return out

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """The pinned host-to-device copy (CUDA only; the CPU path has none)."""
        if self.device.type != "cuda":
            return x
        x = x.pin_memory().to(self.device, non_blocking=True)
        torch.cuda.synchronize(self.device)
        return x

    def infer_top(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.runner(x)
        return logits, logits.reshape(x.shape[0], -1).topk(TOPK, dim=1).indices


class Serial(_Path):
    """One batch per call, each stage between consecutive clock reads (the stages of a call add
    up to the call, exactly)."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.stages: dict[str, list[float]] = {}

    def one(self, record: bool) -> float:
        paths = self.next_paths()
        t0 = time.perf_counter()
        raw = [p.read_bytes() for p in paths]
        t1 = time.perf_counter()
        images = [self.decode(b) for b in raw]
        t2 = time.perf_counter()
        tensors = [self.transform(im) for im in images]
        t3 = time.perf_counter()
        x = torch.stack(tensors)
        t4 = time.perf_counter()
        x = self.to_device(x)
        t5 = time.perf_counter()
        logits = self.runner(x)
        t6 = time.perf_counter()
        logits.reshape(x.shape[0], -1).topk(TOPK, dim=1)
        t7 = time.perf_counter()
        if record:
            cuda = self.device.type == "cuda"
            spans = {"read": t1 - t0, "decode": t2 - t1, "transform": t3 - t2, "batch": (t4 if cuda else t5) - t3,
                     **({"copy": t5 - t4} if cuda else {}), "inference": t6 - t5, "top5": t7 - t6}
            for name, seconds in spans.items():  # consecutive clock reads: they add up to t7 - t0
                self.stages.setdefault(name, []).append(seconds)
        return t7 - t0

    def block(self, n: int) -> list[float]:
        return [self.one(True) for _ in range(n)]

    def call(self) -> None:
        self.one(False)


class Pipeline(_Path):
    """Decode workers feeding inference; a sample is the time between two batches' completions
    (the first batch fills the pipeline and is not a sample)."""

    def __init__(self, *args, decode_threads: int) -> None:
        super().__init__(*args)
        self.decode_threads = decode_threads
        self.pool = ThreadPoolExecutor(decode_threads, thread_name_prefix="levit-bench-decode")
        self.latencies: list[float] = []
        self.waits: list[float] = []

    def _load(self, path: Path) -> torch.Tensor:
        with open(path, "rb") as f:
            raw = f.read()
        return self.transform(self.decode(raw))

    def run(self, n: int, record: bool) -> list[float]:
        batches, queued = [self.next_paths() for _ in range(n + 1)], deque()

        samples, last, submitted = [], 0.0, 0
        for _ in range(min(DEPTH + 1, n + 1)):
            queued.append((time.perf_counter(), [self.pool.submit(self._load, p) for p in batches[submitted]]))
            submitted += 1
        for k in range(n + 1):
            handed, futures = queued.popleft()
            w0 = time.perf_counter()
            tensors = [f.result() for f in futures]
            w1 = time.perf_counter()
            if submitted < n + 1:
                queued.append((time.perf_counter(), [self.pool.submit(self._load, p) for p in batches[submitted]]))
                submitted += 1
            self.infer_top(self.to_device(torch.stack(tensors)))
            done = time.perf_counter()
            if k > 0:
                samples.append(done - last)
                if record:
                    self.waits.append(w1 - w0)
                    self.latencies += [done - handed] * len(tensors)
            last = done
        return samples

    def block(self, n: int) -> list[float]:
        return self.run(n, True)

    def call(self) -> None:
        self.run(1, False)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Items:
    """One entry's end-to-end items, their schedule items, and its top-1/top-5 pass."""

    serial: list[tuple[Serial, Timed]] = field(default_factory=list)
    pipeline: list[tuple[Pipeline, Timed]] = field(default_factory=list)
    top: dict[str, dict] = field(default_factory=dict)  # decoder -> top-1/top-5 on the labelled set

    def timed(self) -> list[Timed]:
        return [t for _p, t in self.serial] + [t for _p, t in self.pipeline]

    def close(self) -> None:
        for p, _t in self.pipeline:
            p.close()


def items(e2e: EndToEnd, label: str, model: str, img_size: int | None, runner: Runner, batch_size: int,
          inference_threads: int, timing: TimingOptions) -> Items:
    """The entry's serial and pipeline items, warmed up (and its top-1 pass, when labelled)."""
    transform = data.eval_transform(model, img_size)
    out = Items()
    try:
        for decoder in e2e.accepted:
            s = Serial(e2e, decoder, transform, runner, batch_size)
            out.serial.append((s, Timed(f"{label} · jpeg {decoder} serial", s.call, _nothing, False, block=s.block)))
            if e2e.files.labels is not None:
                out.top[decoder] = evaluate(s, e2e.files.labels)
            for d in e2e.spec.decode_threads:
                p = Pipeline(e2e, decoder, transform, runner, batch_size, decode_threads=d)
                out.pipeline.append((p, Timed(f"{label} · jpeg {decoder} pipeline {d}+{inference_threads}",
                                              p.call, _nothing, False, block=p.block)))
        for t in out.timed():
            warm(t, timing)
    except BaseException:
        out.close()
        raise
    return out


def _nothing() -> None:
    return None


def evaluate(path: _Path, labels: Sequence[int]) -> dict:
    """Top-1/top-5 of every file through the path's decoder, transform and runner, in order, the
    last batch padded with its last image, counted by ``accuracy``'s own functions, untimed."""
    files, bs = path.files, path.batch_size
    c1 = c5 = 0
    predictions: list[int] = []
    for start in range(0, len(files), bs):
        chunk = files[start:start + bs]
        x = torch.stack([path.transform(path.decode(p.read_bytes())) for p in chunk])
        n = x.shape[0]
        logits, _top = path.infer_top(path.to_device(pad_batch(x, bs)))
        logits = logits.reshape(bs, -1)[:n].float()
        hits1, hits5 = correct_counts(logits, torch.tensor(labels[start:start + n]))
        c1, c5 = c1 + hits1, c5 + hits5
        predictions += [int(v) for v in logits.argmax(1)]
    return {"images": len(files), "correct1": c1, "correct5": c5, "top1": 100.0 * c1 / len(files),
            "top5": 100.0 * c5 / len(files), "predictions": predictions}


def record(e2e: EndToEnd, its: Items, inference_threads: int) -> dict:
    """``Entry.end_to_end`` from the items' rounds (what a results file keeps)."""
    serial, pipeline, notes = [], [], []
    decode_stage: dict[str, str] = {}
    for s, t in its.serial:
        if t.error is not None:
            notes.append(f"{t.label}: {t.error}")
            continue
        if not t.samples:
            continue
        r = serial_record(s.decoder, t.samples,
                          [x.calls for x in t.rounds], s.stages, s.batch_size)
        if r["decoder"] in its.top:
            r.update({k: v for k, v in its.top[r["decoder"]].items() if k != "predictions"})
        if not adds_up(r):
            notes.append(f"{t.label}: the stage times add up to {r['stages_sum_ratio']:.1%} of the call's: a gap untimed")
        side = {k: v for k, v in r["stages"].items() if k in DECODE_SIDE}  # the workers' share, by mean
        decode_stage[r["decoder"]] = max(side, key=lambda k: side[k]["ms_per_image"]) if side else None
        serial.append(r)
    for p, t in its.pipeline:
        if t.error is not None:
            notes.append(f"{t.label}: {t.error}")
            continue
        if not t.samples:
            continue
        name = p.decoder
        pipeline.append(pipeline_record(name, p.decode_threads, inference_threads, t.samples,
                                        [x.calls for x in t.rounds], p.batch_size, p.latencies, p.waits,
                                        decode_stage.get(name)))
    return end_to_end(e2e.files.facts(), e2e.decoders, serial, pipeline, notes)

