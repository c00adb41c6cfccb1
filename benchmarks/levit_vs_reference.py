"""Our LeViT against timm's, side by side, on the same backend, interleaved, in one process.

Both get the same (timm-initialised, norms randomised) weights, so they compute the same function:
every candidate is checked against timm's eager fp32 logits before it is timed.  Candidates:

* ours: fused, token layout and conv layout (the torch backends switch the token layout to SDPA
  attention on CUDA);
* timm: the model as a user builds it, and after timm's own ``reparameterize_model``.
* with ``--floor``, a third side: our fused token model with Hardswish, the attention bias and the
  softmax removed.  It computes every multiply-add of the network (the same GEMMs and
  convolutions, the same reshapes) and nothing else, so its output is wrong (not parity-gated)
  but its speed bounds what any rearrangement of LeViT could reach on that backend: when
  floor / timm < target, the target is out of reach by fusion or layout alone.

Candidates are timed as a run times entries (``schedule.run_rounds``: seeded random order in
rounds), so drift on a shared machine hits all alike.  The table gives each side's best candidate
and their ratio paired by round, with its 95% CI (``levit_bench.stats.paired_ratio``).  Usage::

    python benchmarks/levit_vs_reference.py --device cpu --threads 1 --batch-size 16
    python benchmarks/levit_vs_reference.py --device cuda --backend torch --batch-size 256,2048 --precision fp16
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import levit_bench as lb  # noqa: E402
from levit_bench.backends import BACKENDS, ExportCache, Settings  # noqa: E402
from levit_bench.models.weights import weights_hash  # noqa: E402
from levit_bench.harness import TimingOptions  # noqa: E402
from levit_bench.parity import compare_logits, parity_input  # noqa: E402
from levit_bench.runstate import run_state  # noqa: E402
from levit_bench.schedule import Schedule, Timed, run_rounds, warm  # noqa: E402
from levit_bench.spec import ModelId  # noqa: E402
from levit_bench.stats import median_time_interval, paired_ratio, summarize_calls  # noqa: E402
from levit_bench.sysinfo import physical_cores  # noqa: E402


@dataclass
class Candidate:
    side: str  # ours / timm / floor
    variant: str
    model: torch.nn.Module
    model_id: ModelId | None = None
    samples: list[float] = field(default_factory=list)
    rounds: list[np.ndarray] = field(default_factory=list)  # the samples by round
    call: object = None
    runner: object = None
    parity: dict | None = None
    error: str = ""


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics/affines and attention biases: defaults hide wiring errors."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var") or name.endswith("bn.weight"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or name.endswith("bn.bias") or "attention_biases" in name:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model


def _linear_attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(q k^T) v: the attention's two GEMMs without bias, softmax or scale (token layout)."""
    return (q @ k.transpose(-2, -1)) @ v


def gemm_floor(fused: torch.nn.Module) -> torch.nn.Module:
    """A copy of a fused token-layout LeViT reduced to its GEMMs, convolutions and reshapes."""
    floor = copy.deepcopy(fused)
    for module in floor.modules():
        for child_name, child in module.named_children():
            if isinstance(child, torch.nn.Hardswish):
                setattr(module, child_name, torch.nn.Identity())
        if hasattr(module, "_attend"):
            module._attend = types.MethodType(_linear_attend, module)
    return floor


def candidates(name: str, floor: bool = False) -> tuple[list[Candidate], torch.nn.Module]:
    import timm
    from timm.utils.model import reparameterize_model

    img_size = lb.zoo.input_size(name)
    ref = randomized(timm.create_model(name, pretrained=False)).eval()
    state = ref.state_dict()
    out = [Candidate("timm", "as built", ref), Candidate("timm", "reparameterize_model", reparameterize_model(ref))]
    for layout in ("token", "conv"):
        ours = lb.create_model(name + ("_conv" if layout == "conv" else ""))
        ours.load_state_dict({k: v.reshape(ours.state_dict()[k].shape) for k, v in state.items()})
        fused = lb.zoo.fuse(ours, img_size=img_size)
        out.append(Candidate("ours", f"fused {layout}", fused))
        if floor and layout == "token":
            out.append(Candidate("floor", "GEMMs only (wrong output)", gemm_floor(fused)))
    for c in out:  # one export cache name per candidate: the floor has the fused model's weights
        c.model_id = ModelId(f"{name}-{c.side}-{c.variant.replace(' ', '_')}", img_size, weights_hash(c.model))
    return out, ref


def run_case(name, backend, settings, batch_size, rounds, round_s, cache, floor: bool = False) -> dict:
    cands, ref = candidates(name, floor)
    x = parity_input(batch_size, lb.zoo.input_size(name))
    dev = torch.device(settings.device)
    with torch.inference_mode():
        want = ref.to(dev)(x.to(dev)).float().cpu()
    ref.cpu()
    for c in cands:
        try:
            prepared = BACKENDS[backend].prepare(c.model, c.model_id, x, settings, cache)
            c.runner = prepared.runner
            p = compare_logits(c.runner(x), want, settings.precision)
            c.parity = p.to_dict()
            if not p.ok and c.side != "floor":
                c.error = p.reason
                continue
            c.call = c.runner.bind(x)
        except Exception as exc:  # noqa: BLE001 - report, go on with the others
            c.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    live = [c for c in cands if c.call is not None]
    items = [Timed(c.variant, c.call, c.runner.synchronize, settings.device == "cuda") for c in live]
    timing = TimingOptions(warmup_s=max(round_s, 0.5), warmup_calls=3, min_time_s=round_s * rounds,
                           min_calls=3 * rounds)
    with torch.inference_mode():
        for it in items:
            warm(it, timing)
        run_rounds(items, timing, Schedule(rounds, seed=0))
    for c, it in zip(live, items):
        c.error = c.error or it.error or ""
        c.samples, c.rounds = (list(it.samples), it.round_samples()) if it.error is None else ([], [])
    rows = []
    for c in cands:
        row = {"side": c.side, "variant": c.variant, "error": c.error, "parity": c.parity}
        if c.samples:
            s = summarize_calls(c.samples, batch_size)
            lo, hi = median_time_interval(c.rounds)
            row.update(images_per_second=s.images_per_second, ci95=[batch_size / hi, batch_size / lo],
                       rel_iqr=s.rel_iqr, n=s.n)
        rows.append(row)
    best = {}
    for side in ("ours", "timm", "floor"):
        ok = [c for c in live if c.side == side and c.samples]
        if ok:
            best[side] = max(ok, key=lambda c: batch_size / np.median(c.samples))
    result = {"model": name, "backend": backend, "device": settings.device, "precision": settings.precision,
              "batch_size": batch_size, "threads": settings.threads, "candidates": rows}
    if "ours" in best and "timm" in best:
        r = paired_ratio(best["ours"].rounds, best["timm"].rounds)  # both timed in the same rounds
        result.update(best_ours=best["ours"].variant, best_timm=best["timm"].variant, ratio=r.value,
                      ratio_ci95=list(r.ci95), significant=not r.ci95[0] <= 1.0 <= r.ci95[1])
        if "floor" in best:
            r = paired_ratio(best["floor"].rounds, best["timm"].rounds)
            result.update(floor_ratio=r.value, floor_ratio_ci95=list(r.ci95))
    for c in cands:
        if c.runner is not None:
            c.runner.close()
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--models", default="levit_128s,levit_256,levit_384")
    p.add_argument("--backend", default=None, help="comma list (default cpu: torch,onnxruntime,openvino,torchscript)")
    p.add_argument("--batch-size", default=None, help="comma list (default cpu 16, cuda 256,2048)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", default=None)
    p.add_argument("--compile-mode", default="default")
    p.add_argument("--channels-last", action="store_true", help="torch backends: channels_last for every candidate")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--round-s", type=float, default=0.5)
    p.add_argument("--target", type=float, default=1.25)
    p.add_argument("--floor", action="store_true", help="also time the GEMM-only floor of our model (see above)")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    args = p.parse_args(argv)

    threads = args.threads or physical_cores()
    backends = (args.backend or ("torch,onnxruntime,openvino,torchscript" if args.device == "cpu" else "torch")).split(",")
    batches = [int(b) for b in (args.batch_size or ("16" if args.device == "cpu" else "256,2048")).split(",")]
    precision = args.precision or ("fp32" if args.device == "cpu" else "fp16")
    cache = ExportCache()
    with run_state(threads, cache.root):
        return _run(args, threads, backends, batches, precision, cache)


def _run(args, threads, backends, batches, precision, cache) -> int:
    from rich.console import Console
    from rich.table import Table

    con = Console(width=160)
    results = []
    table = Table(title=f"ours / timm LeViT, {args.device} {precision}, {threads} threads "
                  f"({torch.cuda.get_device_name(0) if args.device == 'cuda' else 'CPU'})", title_justify="left")
    columns = ["model", "backend", "batch", "ours best", "img/s", "timm best", "img/s", "ratio [95% CI]", f"≥{args.target}"]
    if args.floor:
        columns.append("floor/timm [95% CI]")
    for col in columns:
        table.add_column(col)
    for backend in backends:
        for name in args.models.split(","):
            for bs in batches:
                settings = Settings(device=args.device, precision=precision, threads=threads).with_options(
                    compile_mode=args.compile_mode, channels_last=args.channels_last)
                reason = BACKENDS[backend].unavailable_reason(settings)
                if reason:
                    con.print(f"skip {backend}: {reason}")
                    continue
                r = run_case(name, backend, settings, bs, args.rounds, args.round_s, cache, args.floor)
                results.append(r)
                for row in r["candidates"]:
                    con.print(f"  {name} {backend} b{bs} {row['side']:5} {row['variant']:25} "
                              f"{row.get('images_per_second', float('nan')):10.1f} img/s {row['error']}")
                if "ratio" in r:
                    ips = {(c["side"], c["variant"]): c.get("images_per_second") for c in r["candidates"]}
                    lo, hi = r["ratio_ci95"]
                    cells = [name, backend, str(bs), r["best_ours"], f"{ips[('ours', r['best_ours'])]:,.1f}",
                             r["best_timm"], f"{ips[('timm', r['best_timm'])]:,.1f}",
                             f"{r['ratio']:.2f} [{lo:.2f}, {hi:.2f}]", "yes" if lo >= args.target else "no"]
                    if args.floor:
                        flo, fhi = r.get("floor_ratio_ci95", (float("nan"), float("nan")))
                        cells.append(f"{r.get('floor_ratio', float('nan')):.2f} [{flo:.2f}, {fhi:.2f}]")
                    table.add_row(*cells)
                if args.out:
                    Path(args.out).write_text(json.dumps(results, indent=1))
    con.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
