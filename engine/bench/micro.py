"""`marginscope bench --micro`: what one step of each kind costs, measured part by part.

The suite answers "which arm reaches the target first"; these answer why: vectorised MMS against
the naive definition (speed and agreement), the candidate chunk sweep and memory layout, each part
of a fresh-MMS step against a uniform step, and the cost of monitoring. All in one invocation, so
their ratios share the machine's state; ``micro.json`` and ``micro.md`` are written under ``--out``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from marginscope.engine.bench.arms import BenchSettings
from marginscope.engine.bench.machine import (
    bench_model_and_data, candidate_batch, chunk_sweep, load_average, machine_info, timed,
)
from marginscope.engine.config import TrainConfig


def naive_mms(logits: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The definition, one sample and one class at a time in Python (float64): the reference the
    vectorised `minimal_margin_scores` is checked against."""
    z, w = logits.double(), weight.double()
    out = []
    for row in z:
        i = int(row.argmax())
        best = math.inf
        for j in range(z.shape[1]):
            if j != i:
                best = min(best, float((row[i] - row[j]) / torch.linalg.vector_norm(w[i] - w[j])))
        out.append(best)
    return torch.tensor(out, dtype=torch.float64)


def micro_mms_vs_naive(ks: Sequence[int] = (10, 100, 1000), d: int = 128) -> list[dict[str, Any]]:
    from marginscope.engine.selection import minimal_margin_scores

    rows = []
    for k in ks:
        n = 64 if k <= 100 else 16  # the naive loop is O(B K d) Python work
        g = torch.Generator().manual_seed(k)
        w = torch.randn(k, d, generator=g)
        logits = torch.randn(n, d, generator=g) @ w.T
        fast = timed(lambda: minimal_margin_scores(logits, w), reps=20)
        t = time.perf_counter()
        ref = naive_mms(logits, w)
        slow = time.perf_counter() - t
        vec = minimal_margin_scores(logits, w).double()
        rows.append({"K": k, "d": d, "batch": n, "vectorised_s": fast, "naive_s": slow,
                     "speedup": slow / fast, "max_abs_diff": float((vec - ref).abs().max()),
                     "max_rel_diff": float(((vec - ref).abs() / ref.abs().clamp_min(1e-12)).max())})
    return rows


def _contiguous_copy(model: torch.nn.Module) -> torch.nn.Module | None:
    import copy

    try:
        return copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    except Exception:  # noqa: BLE001 - a model that cannot be copied just skips this line
        return None


def micro_step_breakdown(settings: BenchSettings, chunk: int, reps: int = 15) -> dict[str, Any]:
    """Seconds of each part of one fresh-MMS step (B candidates, b trained) and of a uniform step."""
    from marginscope.engine.selection import head_weight, make_selector, minimal_margin_scores, score_logits
    from marginscope.engine.loop import parameter_groups

    device, data, model = bench_model_and_data(settings)
    opt = torch.optim.SGD(parameter_groups(model, 1e-4), lr=0.01, momentum=0.9)
    big, b = settings.candidates, settings.batch_size
    g = torch.Generator().manual_seed(1)

    def gather(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(data.train), (n,), generator=g)
        x, y = data.batch(data.train, idx, augment=False, device=device)
        return x.contiguous(memory_format=torch.channels_last), y

    x, y = gather(big)
    xb, yb = x[:b], y[:b]

    def train_step(xs: torch.Tensor, ys: torch.Tensor) -> None:
        model.train()
        loss = F.cross_entropy(model(xs), ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    logits = score_logits(model, x, chunk=chunk)
    w = head_weight(model)
    memory = make_selector("mms-memory")
    memory.memory = torch.rand(len(data.train))
    idx_pool = torch.randperm(len(data.train))[:big]
    parts = {
        "gather_B": timed(lambda: gather(big), reps),
        "candidate_forward": timed(lambda: score_logits(model, x, chunk=chunk), reps),
        "mms_arithmetic": timed(lambda: minimal_margin_scores(logits, w).topk(b, largest=False), reps),
        "train_step_b": timed(lambda: train_step(xb, yb), reps),
        "gather_b": timed(lambda: gather(b), reps),
        "memory_select": timed(lambda: memory.select(model, x, y, idx_pool, batch_size=b), reps),
    }
    steps_per_epoch = math.ceil(len(data.train) / b)
    refresh_per_step = len(data.train) / steps_per_epoch  # samples re-scored per step (once an epoch)
    mms_step = parts["gather_B"] + parts["candidate_forward"] + parts["mms_arithmetic"] + parts["train_step_b"]
    uniform_step = parts["gather_b"] + parts["train_step_b"]
    memory_step = (parts["gather_B"] + parts["memory_select"] + parts["train_step_b"]
                   + parts["candidate_forward"] * refresh_per_step / big)
    return {
        "B": big, "b": b, "chunk": chunk, "seconds": parts,
        "mms_step_s": mms_step, "uniform_step_s": uniform_step, "memory_step_s": memory_step,
        "share_candidate_forward": parts["candidate_forward"] / mms_step,
        "share_mms_arithmetic": parts["mms_arithmetic"] / mms_step,
        "mms_step_vs_uniform": mms_step / uniform_step,
        "memory_step_vs_uniform": memory_step / uniform_step,
        "forward_sample_vs_train_sample": (parts["candidate_forward"] / big) / (parts["train_step_b"] / b),
    }


def micro_monitoring(settings: BenchSettings, chunk: int, steps: int = 200, rounds: int = 3) -> list[dict[str, Any]]:
    """Wall-clock of the same short run with histograms every step vs monitoring off,
    alternated `rounds` times (the minimum of each is kept, the least disturbed by load)."""
    from marginscope.engine.loop import train

    rows = []
    for selector in ("uniform", "mms"):
        walls: dict[int, list[float]] = {1: [], 0: []}
        for _ in range(rounds):
            for hist in (1, 0):
                cfg = TrainConfig(dataset=settings.dataset, model=settings.model, data_dir=settings.data_dir,
                                  selector=selector, candidates=settings.candidates,
                                  batch_size=settings.batch_size, score_chunk=chunk, steps=steps,
                                  regime="constant", eval_every=steps, eval_samples=500, hist_every=hist,
                                  log_every=10, seed=0, device=settings.device)
                walls[hist].append(train(cfg).wall_time)
        on, off = min(walls[1]), min(walls[0])
        rows.append({"selector": selector, "steps": steps, "hist_every_1_s": on, "hist_every_0_s": off,
                     "overhead": on / off - 1.0, "all_s": {str(k): v for k, v in walls.items()}})
    return rows


def run_micro(settings: BenchSettings, out: Path | None = None, *, log: Callable[[str], None] = print,
              monitoring_steps: int = 200, command: str | None = None) -> dict[str, Any]:
    """All micro-benchmarks in one run (so their ratios share the machine's state)."""
    from marginscope.engine.selection import score_logits

    load_before = load_average()
    log("MMS: vectorised vs naive loop ...")
    mms_rows = micro_mms_vs_naive()
    log("candidate chunk sweep ...")
    _, data, model = bench_model_and_data(settings)
    x, _ = candidate_batch(data, settings.candidates, next(model.parameters()).device)
    sweep = chunk_sweep(model, x)
    chunk = int(sweep["best"]) if settings.score_chunk is None else settings.score_chunk
    layout = None  # channels-last (what training uses) vs the default layout, at the chosen chunk
    model_nchw = _contiguous_copy(model)
    if model_nchw is not None:
        contiguous = x.contiguous()
        layout = {"channels_last_s": timed(lambda: score_logits(model, x, chunk=chunk), 7),
                  "contiguous_model_and_input_s": timed(
                      lambda: score_logits(model_nchw, contiguous, chunk=chunk), 7)}
    log("step breakdown ...")
    breakdown = micro_step_breakdown(settings, chunk)
    log("monitoring overhead ...")
    monitoring = micro_monitoring(settings, chunk, steps=monitoring_steps)
    results = {"command": command, "settings": asdict(settings), "machine": machine_info(),
               "load_average": {"before": load_before, "after": load_average()},
               "mms_vs_naive": mms_rows, "chunk_sweep": sweep, "layout": layout, "step_breakdown": breakdown,
               "monitoring": monitoring}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "micro.json").write_text(json.dumps(results, indent=1))
        (out / "micro.md").write_text(micro_markdown(results, command))
    return results


def micro_markdown(r: dict[str, Any], command: str | None = None) -> str:
    m, bd = r["machine"], r["step_breakdown"]
    lines = [
        "## Micro-benchmarks", "",
        f"{'Command: `' + command + '`. ' if command else ''}Machine: {m['cpu']}, {m['cores']} cores, "
        f"{m['torch_threads']} torch threads; load average before {r['load_average']['before']}, "
        f"after {r['load_average']['after']}.", "",
        "Exact vectorised MMS vs a naive per-sample, per-class Python loop (float64 reference):", "",
        "| K | batch | vectorised | naive loop | speed-up | max abs diff | max rel diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["mms_vs_naive"]:
        lines.append(f"| {row['K']} | {row['batch']} | {row['vectorised_s'] * 1e3:.3f} ms | "
                     f"{row['naive_s'] * 1e3:,.0f} ms | {row['speedup']:,.0f}× | {row['max_abs_diff']:.1e} | "
                     f"{row['max_rel_diff']:.1e} |")
    sw = r["chunk_sweep"]
    lines += ["", f"Eval-mode forward of {sw['batch']} candidates by chunk size (best round of medians):", "",
              "| chunk | " + " | ".join("one batch" if k == "0" else k for k in sw["seconds"]) + " |",
              "|---" * (len(sw["seconds"]) + 1) + "|",
              "| ms | " + " | ".join(f"{v * 1e3:.1f}" for v in sw["seconds"].values()) + " |", "",
              f"Best: {sw['best'] or 'one batch'} ({sw['vs_one_batch']:.2f}× faster than one batch).", ""]
    if r.get("layout"):
        lay = r["layout"]
        lines += [f"Memory layout at that chunk: channels-last {lay['channels_last_s'] * 1e3:.1f} ms vs "
                  f"contiguous (NCHW) {lay['contiguous_model_and_input_s'] * 1e3:.1f} ms "
                  f"({lay['contiguous_model_and_input_s'] / lay['channels_last_s']:.2f}×).", ""]
    s = bd["seconds"]
    lines += [
        f"One fresh-MMS step (B = {bd['B']}, b = {bd['b']}, chunk {bd['chunk'] or 'one batch'}), parts "
        "timed separately (median):", "",
        "| part | ms | share of an MMS step |", "|---|---|---|",
        f"| gather B candidates | {s['gather_B'] * 1e3:.2f} | {s['gather_B'] / bd['mms_step_s']:.1%} |",
        f"| candidate forward (eval, no grad) | {s['candidate_forward'] * 1e3:.2f} | "
        f"{bd['share_candidate_forward']:.1%} |",
        f"| MMS arithmetic + top-b | {s['mms_arithmetic'] * 1e3:.3f} | {bd['share_mms_arithmetic']:.2%} |",
        f"| train step on b (forward, backward, SGD) | {s['train_step_b'] * 1e3:.2f} | "
        f"{s['train_step_b'] / bd['mms_step_s']:.1%} |", "",
        f"An MMS step costs {bd['mms_step_vs_uniform']:.2f}× a uniform step "
        f"({bd['mms_step_s'] * 1e3:.1f} vs {bd['uniform_step_s'] * 1e3:.1f} ms); a forward-only sample "
        f"costs {bd['forward_sample_vs_train_sample']:.2f} of a trained sample. An mms-memory step "
        f"(selection from memory {s['memory_select'] * 1e3:.2f} ms + refresh amortised over the epoch) "
        f"costs about {bd['memory_step_vs_uniform']:.2f}× a uniform step.", "",
        "Monitoring overhead (histograms + selection statistics every step vs off, same run, "
        "minimum of alternated repeats):", "",
        "| selector | steps | monitoring every step | off | overhead |", "|---|---|---|---|---|",
    ]
    for row in r["monitoring"]:
        lines.append(f"| {row['selector']} | {row['steps']} | {row['hist_every_1_s']:.2f} s | "
                     f"{row['hist_every_0_s']:.2f} s | {row['overhead']:+.1%} |")
    return "\n".join(lines) + "\n"
