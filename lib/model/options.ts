// The network's options every part shares: which backbone and stem, the device, the precision and the
// memory format. Training, fine-tuning, serving and export read them from here, so serving need not
// import the training code.
import { z } from 'zod';

const positiveInteger = z.number().int().positive();
export const deviceSchema = z.string().regex(/^(cpu|cuda(:\d+)?)$/, 'device must be cpu, cuda or cuda:<index>');
/** Mixed precision of the network (the packing loss always computes in float32). */
export const precisionSchema = z.enum(['auto', 'bf16', 'fp32']);
export const memoryFormatSchema = z.enum(['auto', 'channels_last', 'contiguous']);

/** The backbone fields every network built from a checkpoint's config shares (trainer, fine-tuner). */
export const backboneOptionsShape = {
  /** Backbone: ResNet-18/34/50 (torchvision layout) or `small` (32-64-128, for 28x28 on CPU). */
  backbone: z.enum(['small', 'resnet18', 'resnet34', 'resnet50']).default('small'),
  /** Stem; defaults to the backbone's own (`small` for small, `imagenet` for the ResNets). */
  stem: z.enum(['imagenet', 'cifar', 'small']).optional(),
  inChannels: positiveInteger.default(3),
  /** Channels of each stage, overriding the backbone's (small: [32, 64, 128]; ResNet-18: [64, 128, 256, 512]). */
  widths: z.array(positiveInteger).min(1).optional(),
  /** Residual blocks per stage, overriding the backbone's (small: [2, 2, 2]; ResNet-18: [2, 2, 2, 2]). */
  blocks: z.array(positiveInteger).min(1).optional(),
};

/** The refinement both backbone schemas carry: overridden widths and blocks describe the same stages. */
export function stagesAgree(o: { widths?: number[] | undefined; blocks?: number[] | undefined }): boolean {
  return o.widths === undefined || o.blocks === undefined || o.widths.length === o.blocks.length;
}
export const stagesMismatchMessage = { message: 'widths and blocks need one entry per stage each', path: ['blocks'] };

/** The stem the backbone takes when none is given. */
export function resolvedStem(o: { backbone: string; stem?: 'imagenet' | 'cifar' | 'small' | undefined }): 'imagenet' | 'cifar' | 'small' {
  return o.stem ?? (o.backbone === 'small' ? 'small' : 'imagenet');
}
