#!/usr/bin/env python3
"""PyTorch peer of bench/training-step.mjs: the same CLAMP training step in plain PyTorch, eager or compiled.

The same network as clamp-native's (a torchvision-style ResNet with a `small` (3x3 stride 2) or `cifar`
(3x3 stride 1) stem, then a Linear-ReLU projector), all views as one batch, the packing loss of
packing_loss_eager.py, backward, and LARS written out like clamp-native's (weight decay and trust
ratio on weights only). Prints one JSON line: the median seconds per step over the timed reps (after one
warm-up step), and views*batch/that as imagesPerSecond.

--device cuda runs it on a GPU (input made on the CPU, moved once, outside the timed loop; the device is
synchronised before every timer read). --bf16 runs the forward (network and projector) under
torch.autocast(device_type, bfloat16); the loss is computed in float32 on the float() of the embeddings.
--channels-last puts the model and the input in torch.channels_last.
--compile runs the network and the loss through torch.compile (Inductor; forward and backward compiled,
LARS in eager mode): the first two steps compile and are not timed (compileSeconds reports them).

With --world N (bench/ddp.mjs's peer) it runs N processes over torch.distributed's Gloo backend, each
with its share of the global batch: embeddings all-gathered with autograd (the local rows keep their
gradient), the loss on the global batch, gradients summed by all_reduce; rank 0 prints the line.

    python3 bench/training_step_eager.py --widths 16,32,64 --blocks 2,2,2 --stem small \
        --channels 1 --size 28 --views 4 --batch 128 --threads 2 --reps 5 [--world 2]

ResNet-18 (CIFAR) with the paper's projector, on a GPU:

    python3 bench/training_step_eager.py --widths 64,128,256,512 --blocks 2,2,2,2 --stem cifar \
        --channels 3 --size 32 --hidden 2048 --out 256 --views 4 --batch 256 --reps 20 \
        --device cuda [--bf16] [--channels-last]
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
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--bf16", action="store_true", help="forward under torch.autocast(bfloat16); loss in float32")
    parser.add_argument("--channels-last", action="store_true", help="model and input in torch.channels_last")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network and the loss (Inductor)")
    a = parser.parse_args()
    if a.stem not in ("small", "cifar"):
        parser.error("--stem takes small (3x3 stride 2) or cifar (3x3 stride 1)")
    if torch.device(a.device).type != "cpu" and a.world > 1:
        parser.error("--world > 1 runs on the CPU only (Gloo, one process per share of the cores)")
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
    device = torch.device(a.device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    net = network([int(w) for w in a.widths.split(",")], [int(b) for b in a.blocks.split(",")], a.stem, a.channels,
                  [int(h) for h in a.hidden.split(",") if h], a.out)
    net = net.to(device=device, memory_format=memory_format)
    params = [p for p in net.parameters()]
    forward, loss_fn = net, packing_loss
    if a.compile:
        forward, loss_fn = torch.compile(net, dynamic=False), torch.compile(packing_loss, dynamic=False)
    warmups = 2 if a.compile else 1  # compiling: the first step compiles, the second settles the caches
    buffers = [torch.zeros_like(p) for p in params]
    # Made on the CPU (the same numbers on every device), moved once, outside the timed loop.
    x = torch.rand(a.views * a.batch // a.world, a.channels, a.size, a.size)
    x = x.to(device).contiguous(memory_format=memory_format)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    warmup_seconds = 0.0
    for rep in range(a.reps + warmups):  # the first ones are the warm-up
        sync()
        start = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=a.bf16):
            emb = forward(x)
        z = emb.float()  # the loss (and the all-gather) in float32
        if a.world > 1:
            z = gathered(z, a.views, a.world)
        loss = loss_fn(z, a.views)
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
        sync()
        if rep >= warmups:
            times.append(time.perf_counter() - start)
        else:
            warmup_seconds += time.perf_counter() - start
    if rank == 0:
        seconds = sorted(times)[len(times) // 2]
        print(json.dumps({
            "secondsPerStep": seconds,
            "imagesPerSecond": a.views * a.batch / seconds,  # view-images per second, global batch
            "torch": torch.__version__,
            "world": a.world,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "bf16": a.bf16,
            "channelsLast": a.channels_last,
            "compiled": a.compile,
            "compileSeconds": warmup_seconds if a.compile else None,
            "loss": loss.item(),
        }), flush=True)
    if a.world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
