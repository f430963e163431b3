#!/usr/bin/python3
"""Eager-PyTorch peer of bench/training-step.mjs: the same CLAMP training step in plain PyTorch.

The same network as clamp-native's (a torchvision-style ResNet with a `small` (3x3 stride 2) or `cifar`
(3x3 stride 1) stem, then a Linear-ReLU projector), all views as one batch, the packing loss of
packing_loss_eager.py, backward, and LARS written out like clamp-native's (weight decay and trust
ratio on weights only). Prints one JSON line: seconds per step over the timed reps.

With --world N (bench/ddp.mjs's peer) it runs N processes over torch.distributed's Gloo backend, each
with its share of the global batch: embeddings all-gathered with autograd (the local rows keep their
gradient), the loss on the global batch, gradients summed by all_reduce; rank 0 prints the line.

    /usr/bin/python3 bench/training_step_eager.py --widths 16,32,64 --blocks 2,2,2 --stem small \
        --channels 1 --size 28 --views 4 --batch 128 --threads 2 --reps 5 [--world 2]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from packing_loss_eager import packing_loss  # noqa: E402


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


def network(widths, blocks, stem, channels, hidden, out):
    layers = [nn.Conv2d(channels, widths[0], 3, 2 if stem == "small" else 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()]
    cin = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for k in range(count):
            layers.append(Block(cin, width, 2 if stage > 0 and k == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    dims = [cin, *hidden]
    for a, b in zip(dims, dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(dims[-1], out))
    return nn.Sequential(*layers)


@torch.no_grad()
def lars_step(params, buffers, lr, momentum=0.9, weight_decay=1e-5, eta=1e-3):
    for p, buf in zip(params, buffers):
        if p.grad is None:
            continue
        update = p.grad
        if p.dim() > 1:
            update = update + weight_decay * p
            w, u = p.norm(), update.norm()
            trust = torch.where((w > 0) & (u > 0), eta * w / u, torch.ones_like(w))
            update = update * trust
        buf.mul_(momentum).add_(update)
        p.add_(buf, alpha=-lr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--widths", default="16,32,64")
    parser.add_argument("--blocks", default="2,2,2")
    parser.add_argument("--stem", default="small")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", default="512")
    parser.add_argument("--out", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--port", type=int, default=29511)
    a = parser.parse_args()
    if a.world > 1:
        import torch.multiprocessing as mp
        mp.spawn(run, args=(a,), nprocs=a.world, join=True)
    else:
        run(0, a)


def gathered(z, views, world):
    """The global [views * world * b, d] batch, view-major, ranks in order within each view; gradient to the local rows."""
    import torch.distributed.nn.functional as dist_fn
    b = z.shape[0] // views
    parts = dist_fn.all_gather(z.contiguous())
    return torch.cat([p.view(views, b, -1) for p in parts], 1).reshape(views * world * b, -1)


def run(rank, a):
    import torch.distributed as dist
    if a.world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank, world_size=a.world)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = network([int(w) for w in a.widths.split(",")], [int(b) for b in a.blocks.split(",")], a.stem, a.channels,
                  [int(h) for h in a.hidden.split(",") if h], a.out)
    params = [p for p in net.parameters()]
    buffers = [torch.zeros_like(p) for p in params]
    x = torch.rand(a.views * a.batch // a.world, a.channels, a.size, a.size)
    times = []
    for rep in range(a.reps + 1):  # the first is the warm-up
        start = time.perf_counter()
        z = net(x)
        if a.world > 1:
            z = gathered(z, a.views, a.world)
        loss = packing_loss(z, a.views)
        net.zero_grad()
        loss.backward()
        if a.world > 1:
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            dist.all_reduce(flat)
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
                offset += p.numel()
        lars_step(params, buffers, 0.1)
        loss.item()
        if rep > 0:
            times.append(time.perf_counter() - start)
    if rank == 0:
        print(json.dumps({"secondsPerStep": sorted(times)[len(times) // 2], "torch": torch.__version__, "world": a.world}), flush=True)
    if a.world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
