#!/usr/bin/env python3
"""The one summary of scripts/gpu-check.sh: reads the JSON lines its stages logged into a folder and
prints the fused CUDA loss against eager PyTorch and torch.compile, the training step against eager
PyTorch, as ratios beside the issue's targets (H100: >= 5x eager and >= 2x torch.compile at b = 4096,
runs at b = 8192, training step >= 1.0x eager). Standard library only.

    python3 bench/gpu/summary.py OUT_DIR
"""
import json
import os
import sys


def json_lines(folder, name):
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def cell(row):
    if row is None:
        return "not run"
    if row.get("oom"):
        return "out of memory"
    if "error" in row:
        return "error"
    peak = row.get("peakMiB")
    return f"{row['medianMs']:.3f} ms, {peak:.0f} MiB" if peak is not None else f"{row['medianMs']:.3f} ms"


def ratio(slow, fast):
    if slow is None or fast is None or "medianMs" not in slow or "medianMs" not in fast:
        return None
    return slow["medianMs"] / fast["medianMs"]


def main(folder):
    environment = {}
    env_path = os.path.join(folder, "environment.json")
    if os.path.exists(env_path):
        with open(env_path) as handle:
            environment = json.load(handle)
    print(f"device: {environment.get('device')} (sm_{environment.get('capability')}), torch {environment.get('torch')}, "
          f"CUDA {environment.get('cuda')}, cuDNN {environment.get('cudnn')}")

    fused = {row["batch"]: row for row in json_lines(folder, "loss-fused.log") if row.get("impl") == "fused"}
    peers = json_lines(folder, "loss-peers.log")
    eager = {row["batch"]: row for row in peers if row.get("impl") == "eager" and "batch" in row}
    compiled = {row["batch"]: row for row in peers if row.get("impl") == "compile" and "batch" in row}
    compile_missing = next((row["error"] for row in peers if row.get("impl") == "compile" and "batch" not in row), None)
    print("\npacking loss, forward + backward, m = 4, d = 512 (median ms, peak memory above the input)")
    print(f"{'b':>6}  {'fused CUDA':>22}  {'eager':>22}  {'torch.compile':>22}  {'eager/fused':>11}  {'compile/fused':>13}  {'loss rel. diff':>14}")
    for b in sorted(set(fused) | set(eager) | set(compiled)):
        f, e, c = fused.get(b), eager.get(b), compiled.get(b)
        r_e, r_c = ratio(e, f), ratio(c, f)
        diff = None
        if f and e and "loss" in f and "loss" in e:
            diff = abs(f["loss"] - e["loss"]) / max(abs(e["loss"]), 1e-12)
        print(f"{b:>6}  {cell(f):>22}  {cell(e):>22}  {cell(c):>22}  "
              f"{(f'{r_e:.2f}x' if r_e else '-'):>11}  {(f'{r_c:.2f}x' if r_c else '-'):>13}  {(f'{diff:.1e}' if diff is not None else '-'):>14}")
    if compile_missing:
        print(f"torch.compile: {compile_missing}")
    at_4096_eager, at_4096_compile = ratio(eager.get(4096), fused.get(4096)), ratio(compiled.get(4096), fused.get(4096))
    runs_8192 = fused.get(8192) is not None and "medianMs" in fused[8192]
    def verdict(value, target):
        return "not measured" if value is None else ("met" if value >= target else "NOT met")
    print(f"targets: b = 4096 >= 5x eager: {verdict(at_4096_eager, 5)}"
          f"{'' if at_4096_eager else ' (eager failed or did not run)'}; >= 2x torch.compile: {verdict(at_4096_compile, 2)}; "
          f"runs at b = 8192: {'yes' if runs_8192 else 'NO'}")

    ours = json_lines(folder, "step-clamp.log")
    theirs = json_lines(folder, "step-eager.log")
    ours, theirs = (ours[-1] if ours else None), (theirs[-1] if theirs else None)
    print("\ntraining step, ResNet-18 (CIFAR stem) + projector 512-2048-256, 16 views x 128 images of 32x32, LARS")
    if ours:
        print(f"  clamp-native: {ours['imagesPerSecond']:.0f} images/s ({ours['secondsPerStep'] * 1e3:.1f} ms/step), "
              f"bf16 {ours['bf16']}, channels_last {ours['channelsLast']}, loss {ours['loss']:.4f}")
    else:
        print("  clamp-native: not measured")
    if theirs:
        print(f"  eager PyTorch: {theirs['imagesPerSecond']:.0f} images/s ({theirs['secondsPerStep'] * 1e3:.1f} ms/step), "
              f"bf16 {theirs.get('bf16')}, channels_last {theirs.get('channelsLast')}, loss {theirs.get('loss')}")
    else:
        print("  eager PyTorch: not measured")
    if ours and theirs:
        step_ratio = ours["imagesPerSecond"] / theirs["imagesPerSecond"]
        print(f"  clamp-native / eager: {step_ratio:.2f}x (target >= 1.0x: {'met' if step_ratio >= 1.0 else 'NOT met'})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
