#!/usr/bin/env python3
"""Eager PyTorch peer of bench/time-to-accuracy.mjs: the fashion-mnist preset's CLAMP recipe, trained for
a wall-clock budget, then the backbone's features of every training and test image written for the
Node side to score with clamp-native's own kNN and linear probe (the same scoring for both sides).

The recipe is lib/config/presets.ts's fashion-mnist preset, written as a user would in plain PyTorch:
a torchvision-style small ResNet (3x3 stride-2 stem, widths 16-32-64, two BasicBlocks a stage, He-normal
fan-out init), the projector 64 -> 2048 -> 128, 4 views of each of 128 images a step, the packing loss of
packing_loss_eager.py at rs 3, LARS (momentum 0.9, weight decay 1e-5 and the trust ratio eta 1e-3 on
weights only) at base lr 4 x batch / 256 with 0.5 epochs of linear warmup and a cosine to 0. The views are
made with batched torch ops on the same thread (random resized crop at scale [0.3, 1] and ratio [3/4, 4/3]
by bilinear grid_sample, flip 0.5, brightness and contrast jitter 0.4 in a random order with p 0.8, the
preset's normalisation), as a plain loop without torchvision would (PyPI's torchvision does not load
beside torch 2.13 here).

--calibrate N: times N steps (after CALIBRATION_WARMUP warm-up steps) and prints {"secondsPerStep": ...}; otherwise trains
floor(--seconds / --seconds-per-step) steps with the schedule laid out over them, then writes
<--out>/train-features.npy and test-features.npy (float32 [n, 64]) and prints {"steps": ..., "trainSeconds": ...}.
"""
import argparse
import gzip
import json
import math
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import packing_loss_eager  # noqa: E402
from training_step_eager import lars_step, network  # noqa: E402

MEAN, STD = 0.286, 0.353
VIEWS, BATCH, BASE_LR, WARMUP_EPOCHS, RS = 4, 128, 4.0, 0.5, 3.0
# Steps left out of --calibrate's timing: the first ones run slower (allocations, oneDNN's primitive caches).
CALIBRATION_WARMUP = 10


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * k:8 + 4 * k], "big") for k in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def crop_boxes(n, generator):
    """torchvision's RandomResizedCrop boxes for n 28x28 images (10 tries, then the centre crop), as fractions."""
    side = 28.0
    area = side * side
    scale = torch.empty(n, 10).uniform_(0.3, 1.0, generator=generator) * area
    log_ratio = torch.empty(n, 10).uniform_(math.log(3 / 4), math.log(4 / 3), generator=generator)
    aspect = torch.exp(log_ratio)
    w = torch.round(torch.sqrt(scale * aspect))
    h = torch.round(torch.sqrt(scale / aspect))
    ok = (w > 0) & (h > 0) & (w <= side) & (h <= side)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1))
    pick = first.clamp_min(0)
    w = torch.where(first >= 0, w[torch.arange(n), pick], torch.full((n,), side))
    h = torch.where(first >= 0, h[torch.arange(n), pick], torch.full((n,), side))
    top = torch.floor(torch.rand(n, generator=generator) * (side - h + 1))
    left = torch.floor(torch.rand(n, generator=generator) * (side - w + 1))
    return top, left, h, w


def views_of(images, generator):
    """images: uint8 [n, 28, 28] -> normalised float32 views [n, 1, 28, 28] (one random view each)."""
    n = images.shape[0]
    x = images.float().unsqueeze(1) / 255
    top, left, h, w = crop_boxes(n, generator)
    flip = torch.rand(n, generator=generator) < 0.5
    # An affine grid mapping the output square onto the box (align_corners=False coordinates in [-1, 1]).
    sx, sy = w / 28, h / 28
    cx, cy = (left + w / 2) / 14 - 1, (top + h / 2) / 14 - 1
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.where(flip, -sx, sx)
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sy
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, [n, 1, 28, 28], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    jitter = torch.rand(n, generator=generator) < 0.8
    brightness = torch.empty(n).uniform_(0.6, 1.4, generator=generator).view(n, 1, 1, 1)
    contrast = torch.empty(n).uniform_(0.6, 1.4, generator=generator).view(n, 1, 1, 1)
    brightness_first = (torch.rand(n, generator=generator) < 0.5).view(n, 1, 1, 1)

    def bright(t):
        return (t * brightness).clamp(0, 1)

    def contr(t):
        return (t * contrast + (1 - contrast) * t.mean((1, 2, 3), keepdim=True)).clamp(0, 1)

    jittered = torch.where(brightness_first, contr(bright(x)), bright(contr(x)))
    x = torch.where(jitter.view(n, 1, 1, 1), jittered, x)
    return (x - MEAN) / STD


def backbone_features(net, images, batch=1000):
    """The backbone's pooled features (the network up to its Flatten) of un-augmented images, eval mode."""
    backbone = net[: [k for k, layer in enumerate(net) if isinstance(layer, nn.Flatten)][0] + 1]
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = (torch.from_numpy(images[start:start + batch]).float().unsqueeze(1) / 255 - MEAN) / STD
            out.append(backbone(x))
    net.train()
    return torch.cat(out).numpy().astype(np.float32)


def init_like_clamp(net):
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibrate", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--seconds-per-step", type=float, default=0)
    parser.add_argument("--steps", type=int, default=0, help="train exactly this many steps (instead of --seconds)")
    parser.add_argument("--out", default=".")
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    generator = torch.Generator().manual_seed(a.seed + 1)
    train = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz")).copy()
    images = torch.from_numpy(train)
    steps_per_epoch = len(train) // BATCH

    net = network([16, 32, 64], [2, 2, 2], "small", 1, [2048], 128)
    init_like_clamp(net)
    params = list(net.parameters())
    buffers = [torch.zeros_like(p) for p in params]
    if a.calibrate:
        steps = a.calibrate + CALIBRATION_WARMUP
    elif a.steps:
        steps = a.steps
    else:
        steps = max(1, int(a.seconds / a.seconds_per_step))
    warmup = min(steps - 1, round(WARMUP_EPOCHS * steps_per_epoch))
    peak = BASE_LR * BATCH / 256

    def lr_at(step):
        if step < warmup:
            return peak * step / warmup
        return 0.5 * peak * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))

    order = torch.randperm(len(train), generator=generator)
    start = time.perf_counter()
    step_seconds = []
    for step in range(steps):
        step_start = time.perf_counter()
        k = step % steps_per_epoch
        if k == 0 and step > 0:
            order = torch.randperm(len(train), generator=generator)
        batch = images[order[k * BATCH:(k + 1) * BATCH]]
        x = torch.cat([views_of(batch, generator) for _ in range(VIEWS)])  # view-major
        loss = packing_loss_eager.packing_loss(net(x), VIEWS)
        net.zero_grad()
        loss.backward()
        lars_step(params, buffers, lr_at(step), weight_decay=1e-5)
        loss.item()
        if a.calibrate and step >= CALIBRATION_WARMUP:
            step_seconds.append(time.perf_counter() - step_start)
    train_seconds = time.perf_counter() - start
    if a.calibrate:
        # The median, not the mean: a burst of the VM's steal during the short calibration would otherwise
        # set the whole budget's step count (seen: a 0.20 s mean where the run then took 0.13 s a step).
        print(json.dumps({"secondsPerStep": statistics.median(step_seconds)}), flush=True)
        return
    test = read_idx(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")).copy()
    for split, split_images in (("train", train), ("test", test)):
        tmp = os.path.join(a.out, f"{split}-features.tmp.npy")
        np.save(tmp, backbone_features(net, split_images))
        os.replace(tmp, os.path.join(a.out, f"{split}-features.npy"))
    print(json.dumps({"steps": steps, "epochs": steps / steps_per_epoch, "trainSeconds": train_seconds, "loss": loss.item()}), flush=True)


if __name__ == "__main__":
    packing_loss_eager.RS = RS  # the preset's radius scale (the loss reads the module's constant)
    main()
