#!/usr/bin/env python3
# The albumentations peer of bench/augment.mjs: the same augmentation pipelines, on the same images, in
# one Python process on one core (cv2.setNumThreads(1), OMP/MKL/OpenBLAS threads 1), timed the same way.
# bench/augment.mjs runs it under the bench-local virtual environment bench/peers/albumentations-venv,
# which it creates on first use (`python3 -m venv`, then `pip install -r
# bench/peers/albumentations-requirements.txt`: albumentations 2.0.8 with opencv-python-headless).
#
#   python augment_albumentations.py SPEC.json   (SPEC written by bench/augment.mjs; prints one JSON line)
#
# SPEC: {imagesFile, count, channels, height, width, pipelines: [clamp-native Augmentation...], views,
# batch, seconds, warmup, seed, profile}. imagesFile holds count x [C, H, W] uint8 (clamp-native's
# dataset layout); they are made HWC once, untimed, the layout albumentations (and every decoder) uses.
# Each batch is view-major [views * batch, C, size, size] float32, view v of image i made by
# pipelines[v % len(pipelines)] and copied in CHW (what ToTensorV2 + default_collate would do), as
# clamp-native's multiViewBatch makes it.
import os

# Before numpy and cv2 are loaded: one thread for every pool, and no update check over the network.
for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'NUMEXPR_NUM_THREADS', 'VECLIB_MAXIMUM_THREADS'):
    os.environ[name] = '1'
os.environ['NO_ALBUMENTATIONS_UPDATE'] = '1'

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)
cv2.ocl.setUseOpenCL(False)

import albumentations as A  # noqa: E402


def stages(p, channels):
    """clamp-native's pipeline p (pipeline.ts's augment(), in its order) as named albumentations transforms."""
    size = p['size']
    out = [('crop', A.RandomResizedCrop(size=(size, size), scale=tuple(p['crop']['scale']), ratio=tuple(p['crop']['ratio']),
                                        interpolation=cv2.INTER_LINEAR, p=1.0))]
    if p['flip'] > 0:
        out.append(('flip', A.HorizontalFlip(p=p['flip'])))
    j = p['colorJitter']
    if j['p'] > 0 and (j['brightness'] > 0 or j['contrast'] > 0 or j['saturation'] > 0 or j['hue'] > 0):
        out.append(('jitter', A.ColorJitter(brightness=j['brightness'], contrast=j['contrast'], saturation=j['saturation'], hue=j['hue'], p=j['p'])))
    if p['grayscale'] > 0 and channels == 3:  # clamp-native's grayscale leaves a one-channel image as it is
        out.append(('gray', A.ToGray(num_output_channels=3, method='weighted_average', p=p['grayscale'])))
    b = p['blur']
    if b['p'] > 0:
        out.append(('blur', A.GaussianBlur(blur_limit=(b['kernelSize'], b['kernelSize']), sigma_limit=tuple(b['sigma']), p=b['p'])))
    s = p['solarize']
    if s['p'] > 0:
        out.append(('solarize', A.Solarize(threshold_range=(s['threshold'], s['threshold']), p=s['p'])))
    n = p.get('normalize')
    if n:
        mean = [n['mean'][c % len(n['mean'])] for c in range(channels)]
        std = [n['std'][c % len(n['std'])] for c in range(channels)]
        out.append(('normalize', A.Normalize(mean=mean, std=std, max_pixel_value=255.0, p=1.0)))
    else:
        out.append(('normalize', A.ToFloat(max_value=255.0, p=1.0)))
    return out


def multi_view_batch(images, indices, views, composes, channels, size):
    n = len(indices)
    out = np.empty((views * n, channels, size, size), dtype=np.float32)
    for i, index in enumerate(indices):
        image = images[index]
        for v in range(views):
            out[v * n + i] = composes[v % len(composes)](image=image)['image'].transpose(2, 0, 1)
    return out


def main():
    spec = json.load(open(sys.argv[1]))
    count, channels, height, width = spec['count'], spec['channels'], spec['height'], spec['width']
    chw = np.fromfile(spec['imagesFile'], dtype=np.uint8, count=count * channels * height * width).reshape(count, channels, height, width)
    images = np.ascontiguousarray(chw.transpose(0, 2, 3, 1))  # [count, H, W, C]
    pipelines = spec['pipelines']
    size = pipelines[0]['size']
    named = [stages(p, channels) for p in pipelines]
    composes = [A.Compose([t for _, t in s], seed=spec['seed'] + k) for k, s in enumerate(named)]
    views, batch = spec['views'], spec['batch']
    position = 0

    def next_indices():
        nonlocal position
        indices = [(position + k) % count for k in range(batch)]
        position += batch
        return indices

    warm_end = time.perf_counter() + spec['warmup']
    while True:
        multi_view_batch(images, next_indices(), views, composes, channels, size)
        if time.perf_counter() >= warm_end:
            break
    made = 0
    start = time.perf_counter()
    while True:
        multi_view_batch(images, next_indices(), views, composes, channels, size)
        made += views * batch
        elapsed = time.perf_counter() - start
        if elapsed >= spec['seconds']:
            break

    # Output check (untimed): per-channel mean and std of one batch of the first images.
    check = multi_view_batch(images, list(range(min(spec['checkImages'], count))), views, composes, channels, size)
    result = {
        'albumentations': A.__version__, 'opencv': cv2.__version__, 'numpy': np.__version__, 'cv2Threads': cv2.getNumThreads(),
        'views': made, 'seconds': elapsed, 'viewsPerSecond': made / elapsed,
        'shape': list(check.shape), 'dtype': str(check.dtype),
        'mean': check.mean(axis=(0, 2, 3), dtype=np.float64).tolist(), 'std': check.std(axis=(0, 2, 3), dtype=np.float64).tolist(),
    }

    if spec.get('profile'):
        # Each transform called on its own, in the pipeline's order, over the same images: microseconds
        # per view by stage, against the whole Compose call on the same views (its own bookkeeping is the rest).
        totals, compose_time, profiled = {}, 0.0, 0
        profile_end = time.perf_counter() + spec['profileSeconds']
        while time.perf_counter() < profile_end:
            indices = next_indices()
            out = np.empty((views * batch, channels, size, size), dtype=np.float32)
            for i, index in enumerate(indices):
                image = images[index]
                for v in range(views):
                    k = v % len(composes)
                    t0 = time.perf_counter()
                    composes[k](image=image)
                    compose_time += time.perf_counter() - t0
                    view = image
                    t = time.perf_counter()
                    for name, transform in named[k]:
                        view = transform(image=view)['image']
                        now = time.perf_counter()
                        totals[name] = totals.get(name, 0.0) + now - t
                        t = now
                    out[v * batch + i] = view.transpose(2, 0, 1)
                    totals['copy'] = totals.get('copy', 0.0) + time.perf_counter() - t
            profiled += views * batch
        result['profile'] = {'views': profiled, 'microsecondsPerView': {name: 1e6 * s / profiled for name, s in totals.items()},
                             'composeMicrosecondsPerView': 1e6 * compose_time / profiled}
    print(json.dumps(result))


if __name__ == '__main__':
    main()
