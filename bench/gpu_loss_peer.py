#!/usr/bin/env python3
"""PyTorch peer of the fused CUDA packing-loss benchmark: eager and torch.compile'd forward+backward.

The loss is packing_loss() of packing_loss_eager.py (the spec's /work/shared/spec/packing-loss.md written
literally with a [b, b, d] broadcast); `compile` is torch.compile(packing_loss, dynamic=False), compiled
once per shape. For every impl and batch b the input is made exactly like this, so that a C++ program on
the same LibTorch can make a bit-identical one (float32, view-major: row v*b + i is view v of image i):

    torch.manual_seed(seed)
    centre = torch.randn(b, d)
    noise = torch.randn(m * b, d)
    z = (0.5 * centre.repeat(m, 1) + 0.5 * noise).to(device).requires_grad_()

Per (impl, b): a few warm-up calls (they compile), then `reps` timed forward+backward passes
(z.grad = None; loss = packing_loss(z, m); loss.backward()), each between torch.cuda.synchronize() calls.

    python3 bench/gpu_loss_peer.py --device cuda --batches 512,4096,8192 --views 4 --dim 512 \
        --impl eager,compile --seed 0 [--reps 20] [--warmup 3] [--json out.json]

    /usr/bin/python3 bench/gpu_loss_peer.py --device cpu --batches 64,128 --views 4 --dim 32 --reps 3 \
        --impl eager,compile        # CPU smoke test; torch 1.13 has no torch.compile (reported as an error)

Stdout, one JSON object a line (--json writes the same objects, in order, as one JSON list):
    {"device": GPU name (or "cpu"), "torch": version, "cuda": CUDA version or null, "seed": ...}
    {"impl", "batch", "views", "dim", "reps", "medianMs", "minMs", "timesMs", "warmupMs",
     "peakMiB" (peak allocated during the timed reps above what was allocated before them; null on CPU),
     "baseMiB" (allocated before them; null on CPU), "loss"}
    {"impl", "batch", "views", "dim", "oom": true, "message"}      out of memory (freed, then the next one)
    {"impl", "batch", "views", "dim", "error": "..."}              any other failure (e.g. compile); goes on
    {"impl": "compile", "error": "..."}                            torch has no torch.compile
"""
import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from packing_loss_eager import packing_loss  # noqa: E402

MIB = 2 ** 20


def make_input(b, m, d, seed, device):
    """The benchmark's input; see the module docstring (the C++ side must reproduce it bit for bit)."""
    torch.manual_seed(seed)
    centre = torch.randn(b, d)
    noise = torch.randn(m * b, d)
    return (0.5 * centre.repeat(m, 1) + 0.5 * noise).to(device).requires_grad_()


def is_out_of_memory(error):
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if isinstance(error, MemoryError) or (oom_type is not None and isinstance(error, oom_type)):
        return True
    text = str(error)
    return "out of memory" in text or "Cannot allocate memory" in text or "can't allocate memory" in text


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step(fn, z, m):
    z.grad = None
    loss = fn(z, m)
    loss.backward()
    return loss


def measure(fn, b, m, d, seed, device, reps, warmup):
    """One (impl, batch) measurement; raises on failure (the caller frees memory outside this frame)."""
    z = make_input(b, m, d, seed, device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(warmup):
        step(fn, z, m)
    synchronize(device)
    warmup_ms = (time.perf_counter() - start) * 1e3

    z.grad = None
    cuda = device.type == "cuda"
    if cuda:
        gc.collect()
        synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    loss = None
    for _ in range(reps):
        loss = None  # the previous rep's graph is already freed by backward(); drop the scalar too
        synchronize(device)
        start = time.perf_counter()
        loss = step(fn, z, m)
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    peak_mib = base_mib = None
    if cuda:
        peak_mib = (torch.cuda.max_memory_allocated(device) - base) / MIB
        base_mib = base / MIB
    return {
        "medianMs": statistics.median(times),
        "minMs": min(times),
        "timesMs": times,
        "warmupMs": warmup_ms,
        "peakMiB": peak_mib,
        "baseMiB": base_mib,
        "loss": loss.item(),
    }


def free_memory(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def reset_compiler():
    """Drop compiled graphs so that each shape compiles once and no recompile limit is reached."""
    try:
        torch._dynamo.reset()
    except Exception:  # noqa: BLE001 - best effort; not all versions expose it the same way
        pass


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or device.type


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--batches", default="512,4096,8192", help="comma-separated image batch sizes b")
    parser.add_argument("--views", type=int, default=4, help="views per image m (>= 2)")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension d")
    parser.add_argument("--impl", default="eager,compile", help="comma-separated: eager, compile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=20, help="timed forward+backward passes")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes first (compile needs a few)")
    parser.add_argument("--json", help="also write all output objects as one JSON list to this file")
    a = parser.parse_args()

    batches = [int(part) for part in a.batches.split(",") if part]
    impls = [part for part in a.impl.split(",") if part]
    for impl in impls:
        if impl not in ("eager", "compile"):
            parser.error(f"--impl: unknown implementation {impl} (eager, compile)")
    if a.views < 2 or any(b < 2 for b in batches):
        parser.error("the loss needs --views >= 2 and every batch >= 2")
    if a.reps < 1 or a.warmup < 0:
        parser.error("--reps must be >= 1 and --warmup >= 0")
    device = torch.device(a.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            parser.error("--device cuda: torch.cuda.is_available() is False")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)

    lines = []

    def emit(obj):
        lines.append(obj)
        print(json.dumps(obj), flush=True)

    emit({"device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
          "deviceType": device.type, "seed": a.seed})

    m, d = a.views, a.dim
    for impl in impls:
        if impl == "eager":
            fn = packing_loss
        else:
            if not hasattr(torch, "compile"):
                emit({"impl": "compile", "error": f"torch {torch.__version__} has no torch.compile"})
                continue
            try:
                fn = torch.compile(packing_loss, dynamic=False)
            except Exception as error:  # noqa: BLE001
                emit({"impl": "compile", "error": f"{type(error).__name__}: {error}"})
                continue
        for b in batches:
            head = {"impl": impl, "batch": b, "views": m, "dim": d}
            if impl == "compile":
                reset_compiler()
            result = None
            try:
                result = {**head, "reps": a.reps, **measure(fn, b, m, d, a.seed, device, a.reps, a.warmup)}
            except Exception as error:  # noqa: BLE001 - report and go on with the next one
                message = f"{type(error).__name__}: {error}".strip()
                if is_out_of_memory(error):
                    result = {**head, "oom": True, "message": message.splitlines()[0][:500]}
                else:
                    result = {**head, "error": message[:2000]}
            # Outside the except block: the traceback (and the tensors its frames held) is gone now.
            free_memory(device)
            emit(result)
        if impl == "compile":
            reset_compiler()

    if a.json:
        with open(a.json, "w") as out:
            json.dump(lines, out, indent=2)
            out.write("\n")


if __name__ == "__main__":
    main()
