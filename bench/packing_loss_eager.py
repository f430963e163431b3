#!/usr/bin/env python3
"""PyTorch peer of bench/packing-loss.mjs: one (shape) measurement in a fresh process, eager or compiled.

The CLAMP packing loss written literally from /work/shared/spec/packing-loss.md with broadcasting
(a [b, b, d] tensor of centre differences) and autograd. It is spawned by the Node benchmark, which
also writes the input file and applies the memory limit and timeout; it prints one JSON line.

    python3 bench/packing_loss_eager.py --shape 512x4x512 --input z.f32 --threads 2 \
        --target-ms 2500 --min-reps 3 --max-reps 20 [--compile]

--compile runs the same function through torch.compile (Inductor, which on the CPU generates C++ with
OpenMP loops and fuses the elementwise work around the [b, b, d] reduction). Compilation happens in
the first call, before the memory baseline is taken: the peak extra memory and the times are those of
the compiled code, and the compile time is reported on its own (compileMs).
The interpreter is the benchmark's PYTHON (default python3: the quick start's pip torch 2.13).
"""
import argparse
import json
import math
import re
import statistics
import sys
import time

import torch

# The paper's defaults, the same values the Node side passes to the addon.
RS, POT_POW, MIN_MARGIN, MAX_RANGE, LW0, LW1 = 7.0, 2.0, 1e-3, 1.5, 0.0, 1.0


def packing_loss(z, m):
    """z: [m*b, d] view-major rows (row v*b + i is view v of image i). Returns L = log(E + 1e-6)."""
    d = z.shape[1]
    b = z.shape[0] // m
    z = z - z.mean(0, keepdim=True)                                   # 1. global centring
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)              # 2. unit norm
    views = z.view(m, b, d)
    c = views.mean(0)                                                 # 3. centres [b, d]
    t = ((views - c) ** 2).sum(dim=(0, 2)) / (m - 1)                  # 4. spread [b]
    r = RS * torch.sqrt(t / min(d, m) + 1e-12)                        # 5. radii [b]
    diff = c.unsqueeze(1) - c.unsqueeze(0)                            # [b, b, d]
    dist = torch.sqrt((diff ** 2).sum(-1) + 1e-12)                    # 6. centre distances [b, b]
    s = (r.unsqueeze(1) + r.unsqueeze(0) + 1e-6).clamp_max(MAX_RANGE)  # 7. contact range
    not_self = ~torch.eye(b, dtype=torch.bool, device=z.device)
    mask = (dist > MIN_MARGIN) & (dist < s) & not_self                # 8. contact set
    # where() before the power: non-contact pairs contribute exactly 0 (and a zero gradient).
    overlap = torch.where(mask, 1 - dist / s, torch.zeros_like(dist))
    energy = 0.5 * (overlap ** POT_POW).sum() * LW1 + LW0 * r.sum()   # 9. energy
    return torch.log(energy + 1e-6)                                   # 10. loss


def status_kib(field):
    with open("/proc/self/status") as status:
        return int(re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.M).group(1))


def reset_peak_rss():
    """Make VmHWM equal the current VmRSS (Linux >= 4.0), so the next peak is this run's alone."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def forward_backward(z, m, loss_fn=packing_loss):
    """One timed forward+backward in ms, and the loss."""
    z.grad = None
    start = time.perf_counter()
    loss = loss_fn(z, m)
    loss.backward()
    value = loss.item()
    return (time.perf_counter() - start) * 1e3, value


def is_out_of_memory(error):
    return isinstance(error, MemoryError) or re.search(
        r"can't allocate memory|Cannot allocate memory|out of memory|bad_alloc", str(error)) is not None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", required=True, help="BxMxD, e.g. 512x4x512")
    parser.add_argument("--input", required=True, help="raw little-endian float32 file of m*b*d values")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--target-ms", type=float, default=2500)
    parser.add_argument("--min-reps", type=int, default=3)
    parser.add_argument("--max-reps", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="torch.compile the loss (Inductor)")
    args = parser.parse_args()
    b, m, d = (int(part) for part in args.shape.split("x"))

    torch.set_num_threads(args.threads)
    z = torch.from_file(args.input, shared=False, size=m * b * d, dtype=torch.float32).view(m * b, d)
    z.requires_grad_(True)
    # A tiny call first so that one-time runtime start-up (thread pool) is not counted as extra memory.
    forward_backward(torch.randn(2 * 2, 4, requires_grad=True), 2)
    loss_fn, compile_ms = packing_loss, None

    try:
        if args.compile:
            # Static shapes, as a training loop sees them; the first call compiles forward and backward.
            loss_fn = torch.compile(packing_loss, dynamic=False)
            compile_ms, _ = forward_backward(z, m, loss_fn)
        baseline_kib = status_kib("VmRSS")
        peak_reset = reset_peak_rss()
        # The peak-memory run doubles as the warm-up; its time only sizes the number of reps.
        first_ms, loss = forward_backward(z, m, loss_fn)
        peak_kib = status_kib("VmHWM")
        reps = min(args.max_reps, max(args.min_reps, math.ceil(args.target_ms / max(first_ms, 1e-3))))
        times = [forward_backward(z, m, loss_fn)[0] for _ in range(reps)]
    except (RuntimeError, MemoryError) as error:
        print(json.dumps({"error": "oom" if is_out_of_memory(error) else "error", "message": str(error)}))
        sys.exit(1)

    print(json.dumps({
        "impl": "compile" if args.compile else "eager",
        "compileMs": compile_ms,
        "loss": loss,
        "medianMs": statistics.median(times),
        "timesMs": times,
        "firstMs": first_ms,
        "reps": reps,
        "baselineRssBytes": baseline_kib * 1024,
        "peakExtraBytes": (peak_kib - baseline_kib) * 1024,
        "peakReset": peak_reset,
        "threads": torch.get_num_threads(),
        "torchVersion": torch.__version__,
    }))


if __name__ == "__main__":
    main()
