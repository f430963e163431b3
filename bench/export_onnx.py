#!/usr/bin/env python3
"""Exports a clamp-native checkpoint's backbone to ONNX, for bench/embed.mjs's onnxruntime-node peer.

Reads the safetensors checkpoint by hand (no `safetensors` package needed), rebuilds the backbone its
config describes exactly as native/src/core/models/resnet.cpp does (torchvision's parameter names and
blocks, the imagenet / cifar / small stems, BatchNorm's default eps 1e-5 and momentum 0.1, global
average pooling to [n, feature_dim]), loads every backbone tensor strictly and exports it in evaluation
mode: input `images` [n, C, size, size] float32, already normalised with the config's mean and std;
output `features` [n, feature_dim]; the batch axis dynamic. Prints one JSON line describing the graph.

    python3 bench/export_onnx.py CHECKPOINT.safetensors OUT.onnx [--opset 17]

Needs torch and numpy; on torch 2.x also the `onnx` package (`python3 -m pip install onnx`), which
torch's TorchScript-based exporter (used here: it takes the module as it is, with no export tracing of
its own) imports to write the file. torch 1.13 (Debian's) needs nothing more.
"""
import argparse
import inspect
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4")}
NOT_BACKBONE = ("projector.", "optimizer.", "trainer.")

# ResNetOptions::named in native/src/core/models/resnet.h: blocks, widths, bottleneck, default stem.
BACKBONES = {
    "resnet18": ([2, 2, 2, 2], [64, 128, 256, 512], False, "imagenet"),
    "resnet34": ([3, 4, 6, 3], [64, 128, 256, 512], False, "imagenet"),
    "resnet50": ([3, 4, 6, 3], [64, 128, 256, 512], True, "imagenet"),
    "small": ([2, 2, 2], [32, 64, 128], False, "small"),
}


def read_safetensors(path):
    """The tensors (name -> torch tensor, copied out of the file) and the string metadata."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path} is too short to be a safetensors file")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if 8 + header_len > len(blob):
        raise ValueError(f"{path}: the header length {header_len} runs past the end of the file")
    header = json.loads(blob[8 : 8 + header_len].decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(blob)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        dtype = DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, which this reader does not handle")
        start, end = info["data_offsets"]
        shape = [int(d) for d in info["shape"]]
        count = int(np.prod(shape)) if shape else 1
        if end - start != count * dtype.itemsize or end > len(body):
            raise ValueError(f"{path}: tensor {name}'s data_offsets {start}..{end} do not fit its shape {shape} and dtype")
        array = np.frombuffer(body[start:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
        tensors[name] = torch.from_numpy(array)
    return tensors, metadata


def conv(cin, cout, kernel, stride):
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class Block(nn.Module):
    """torchvision's BasicBlock (expansion 1) or Bottleneck (expansion 4, stride on the 3x3 conv)."""

    def __init__(self, cin, width, stride, bottleneck):
        super().__init__()
        self.bottleneck = bottleneck
        cout = width * 4 if bottleneck else width
        if bottleneck:
            self.conv1, self.bn1 = conv(cin, width, 1, 1), nn.BatchNorm2d(width)
            self.conv2, self.bn2 = conv(width, width, 3, stride), nn.BatchNorm2d(width)
            self.conv3, self.bn3 = conv(width, cout, 1, 1), nn.BatchNorm2d(cout)
        else:
            self.conv1, self.bn1 = conv(cin, width, 3, stride), nn.BatchNorm2d(width)
            self.conv2, self.bn2 = conv(width, cout, 3, 1), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        if self.bottleneck:
            y = torch.relu(self.bn2(self.conv2(y)))
            y = self.bn3(self.conv3(y))
        else:
            y = self.bn2(self.conv2(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, blocks, widths, bottleneck, stem, in_channels):
        super().__init__()
        if not blocks or len(blocks) != len(widths):
            raise ValueError(f"ResNet needs one width per stage and at least one stage (blocks {blocks}, widths {widths})")
        self.stem = stem
        self.conv1 = conv(in_channels, widths[0], 7, 2) if stem == "imagenet" else conv(in_channels, widths[0], 3, 2 if stem == "small" else 1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        channels = widths[0]
        for stage, (count, width) in enumerate(zip(blocks, widths)):
            layer = []
            for k in range(count):
                layer.append(Block(channels, width, 2 if stage > 0 and k == 0 else 1, bottleneck))
                channels = width * (4 if bottleneck else 1)
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        self.num_stages = len(blocks)
        self.feature_dim = channels

    def forward(self, images):
        x = torch.relu(self.bn1(self.conv1(images)))
        if self.stem == "imagenet":
            x = torch.nn.functional.max_pool2d(x, 3, stride=2, padding=1)
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)
        return x.mean((2, 3))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--opset", type=int, default=17)
    a = parser.parse_args()

    tensors, metadata = read_safetensors(a.checkpoint)
    if "config" not in metadata:
        sys.exit(f"{a.checkpoint} has no `config` in its metadata; is it a clamp-native checkpoint?")
    config = json.loads(metadata["config"])
    model = config.get("model", {})
    backbone = model.get("backbone", "small")
    if backbone not in BACKBONES:
        sys.exit(f"unknown backbone {backbone!r}: expected one of {', '.join(BACKBONES)}")
    blocks, widths, bottleneck, stem = BACKBONES[backbone]
    blocks = model.get("blocks") or blocks
    widths = model.get("widths") or widths
    stem = model.get("stem") or stem
    pipeline = config["augment"][0] if isinstance(config["augment"], list) else config["augment"]
    size = int(pipeline["size"])
    normalize = pipeline.get("normalize") or {}

    state = {name: t for name, t in tensors.items() if not name.startswith(NOT_BACKBONE)}
    if "conv1.weight" not in state:
        sys.exit(f"{a.checkpoint} has no conv1.weight: not a clamp-native backbone")
    in_channels = int(state["conv1.weight"].shape[1])

    torch.manual_seed(0)
    net = ResNet(blocks, widths, bottleneck, stem, in_channels)
    net.load_state_dict(state, strict=True)
    net.eval()

    example = torch.rand(2, in_channels, size, size)
    # torch 2.9 and newer default to the torch.export-based exporter, which needs onnxscript too; the
    # TorchScript one writes the same graph for this plain network.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    if legacy:
        try:
            import onnx  # noqa: F401
        except ImportError:
            sys.exit(f"export_onnx.py: torch {torch.__version__}'s ONNX exporter needs the onnx package: python3 -m pip install onnx")
    with torch.no_grad():
        reference = net(example)
        torch.onnx.export(
            net,
            example,
            a.out,
            input_names=["images"],
            output_names=["features"],
            dynamic_axes={"images": {0: "n"}, "features": {0: "n"}},
            opset_version=a.opset,
            do_constant_folding=True,
            **legacy,
        )
    print(json.dumps({
        "onnx": a.out,
        "backbone": backbone,
        "stem": stem,
        "widths": widths,
        "blocks": blocks,
        "bottleneck": bottleneck,
        "inChannels": in_channels,
        "size": size,
        "featureDim": net.feature_dim,
        "mean": normalize.get("mean"),
        "std": normalize.get("std"),
        "opset": a.opset,
        "tensors": len(state),
        "torch": torch.__version__,
        "referenceNorm": float(reference.norm()),
    }))


if __name__ == "__main__":
    main()
