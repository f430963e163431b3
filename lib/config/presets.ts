// Ready-made runs. cifar10, imagenet100 and imagenet1k mirror the paper's setups (Zhang, Heeger &
// Martiniani, NeurIPS 2025): backbone, projector, views, batch, rs, LARS with warmup + cosine and the
// linear scaling rule. Their base learning rate and weight decay are the usual SSL values for LARS
// (solo-learn's), since our spec does not fix them. fashion-mnist is the CPU default, sized for a
// 2-core machine (see the README for what it reaches and how long it takes).
import type { TrainConfigInput } from './train-config.js';

// torchvision's ImageNet statistics; CIFAR-10's and Fashion-MNIST's own below.
const IMAGENET_NORMALIZE = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const IMAGENET_JITTER = { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 };

// The paper's asymmetric pair (BYOL's): blur always on one pipeline, solarize sometimes on the other.
const IMAGENET_PIPELINES = [
  { size: 224, crop: { scale: [0.08, 1] }, colorJitter: IMAGENET_JITTER, grayscale: 0.2, blur: { p: 1 }, normalize: IMAGENET_NORMALIZE },
  {
    size: 224,
    crop: { scale: [0.08, 1] },
    colorJitter: IMAGENET_JITTER,
    grayscale: 0.2,
    blur: { p: 0.1 },
    solarize: { p: 0.2 },
    normalize: IMAGENET_NORMALIZE,
  },
] satisfies TrainConfigInput['augment'];

export const PRESETS = {
  'fashion-mnist': {
    data: { dataset: 'fashion-mnist' },
    augment: {
      size: 28,
      crop: { scale: [0.3, 1] },
      flip: 0.5,
      colorJitter: { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0, hue: 0 },
      grayscale: 0,
      normalize: { mean: [0.286], std: [0.353] },
    },
    // Widths 16-32-64 rather than the small ResNet's 32-64-128: three times the images per second on 2
    // cores (bench/training-step.mjs), which buys more epochs in the same time. rs 3, base lr 4 and the
    // 2048-wide projector won a proxy sweep (15,000 images, 3 epochs) over rs 5, lr 2, a 512-wide
    // projector and crop scale [0.08, 1].
    model: { backbone: 'small', widths: [16, 32, 64], projectorHidden: [2048], projectorOut: 128 },
    loss: { rs: 3 },
    optimiser: { name: 'lars', weightDecay: 1e-5 },
    schedule: { epochs: 8, warmupEpochs: 0.5, baseLr: 4 },
    run: { batchSize: 128, views: 4, checkpointEvery: 1 },
    // A kNN monitor after every epoch on 10,000 training and 2,000 test images (about 5 s of a ~60 s
    // epoch), so the report's accuracy chart follows the run; the final evaluation uses every image.
    eval: { every: 1, atEnd: true, monitorImages: { train: 10000, test: 2000 } },
  },
  cifar10: {
    data: { dataset: 'cifar10' },
    augment: {
      size: 32,
      crop: { scale: [0.2, 1] },
      colorJitter: { p: 0.8, brightness: 0.4, contrast: 0.4, saturation: 0.2, hue: 0.1 },
      grayscale: 0.2,
      normalize: { mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616] },
    },
    model: { backbone: 'resnet18', stem: 'cifar', projectorHidden: [2048], projectorOut: 256 },
    loss: { rs: 7 },
    optimiser: { name: 'lars', weightDecay: 1e-5, eta: 1e-3 },
    schedule: { epochs: 1000, warmupEpochs: 10, baseLr: 0.3 },
    run: { batchSize: 128, views: 16, checkpointEvery: 10 },
    eval: { every: 50 },
  },
  imagenet100: {
    data: { dataset: 'image-folder', imageSize: 256, channels: 3 },
    augment: IMAGENET_PIPELINES,
    model: { backbone: 'resnet50', projectorHidden: [8192, 8192], projectorOut: 512 },
    loss: { rs: 8.5 },
    optimiser: { name: 'lars', weightDecay: 1e-5, eta: 1e-3 },
    schedule: { epochs: 400, warmupEpochs: 10, baseLr: 0.3 },
    run: { batchSize: 512, views: 4, checkpointEvery: 10, device: 'cuda' },
    eval: { every: 50 },
  },
  imagenet1k: {
    data: { dataset: 'image-folder', imageSize: 256, channels: 3 },
    augment: IMAGENET_PIPELINES,
    model: { backbone: 'resnet50', projectorHidden: [8192, 8192], projectorOut: 512 },
    loss: { rs: 8.5 },
    optimiser: { name: 'lars', weightDecay: 1e-6, eta: 1e-3 },
    schedule: { epochs: 100, warmupEpochs: 10, baseLr: 0.3 },
    run: { batchSize: 512, views: 4, checkpointEvery: 5, device: 'cuda' },
    eval: { every: 10 },
  },
} satisfies Record<string, TrainConfigInput>;

export type PresetName = keyof typeof PRESETS;
