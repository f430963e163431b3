// The native fine-tuning step from TypeScript: a backbone and a linear classifier head trained with
// cross-entropy on labelled images, the head at the scheduled learning rate and the backbone at that
// rate times backboneLrScale (0 freezes it: the linear probe trained through augmented images). The
// head standardises its input with statistics measured once on the labelled images, as the linear
// probe does.
import { z } from 'zod';
import { validationError } from '../config/errors.js';
import { nativeOptimiserOptions, optimiserSchema } from '../config/optimiser.js';
import type { NativeFineTuner } from '../runtime/addon-types.js';
import { native } from '../runtime/native.js';
import { backboneOptionsShape, deviceSchema, resolvedStem, stagesAgree, stagesMismatchMessage } from '../model/options.js';
import { checkImageBatch, scheduleSchema, type StateEntry } from './trainer.js';
import type { FineTuneStepResult } from '../runtime/addon-types.js';
import { NativeObject } from '../runtime/native-object.js';

export const fineTunerOptionsSchema = z
  .object({
    ...backboneOptionsShape,
    classes: z.number().int().min(2),
    /** The head's optimiser (the backbone's too, at the scaled rate). SimCLR's protocol: SGD, Nesterov momentum, no decay. */
    optimiser: optimiserSchema.prefault({ name: 'sgd', nesterov: true, weightDecay: 0 }),
    /** The head's learning rate over the steps. */
    schedule: scheduleSchema,
    /** The backbone's learning rate as a fraction of the head's; 0 freezes the backbone (evaluation mode, no gradients). */
    backboneLrScale: z.number().finite().min(0).default(0.1),
    device: deviceSchema.default('cpu'),
    /** Initial backbone weights, before loadBackbone (a from-scratch baseline keeps them). */
    seed: z.number().int().min(0).default(0),
  })
  .strict()
  .refine(stagesAgree, stagesMismatchMessage);

export type FineTunerOptions = z.input<typeof fineTunerOptionsSchema>;

export type { FineTuneStepResult };

type Shape = readonly [number, number, number, number];

export class FineTuner extends NativeObject<NativeFineTuner> {
  private constructor(
    handle: NativeFineTuner,
    readonly options: z.output<typeof fineTunerOptionsSchema>,
  ) {
    super(handle, 'FineTuner');
  }

  static async create(options: FineTunerOptions): Promise<FineTuner> {
    const parsed = fineTunerOptionsSchema.safeParse(options, { reportInput: true });
    if (!parsed.success) throw validationError(parsed.error, 'options');
    const resolved = parsed.data;
    return new FineTuner(
      await native().createFineTuner({ ...resolved, stem: resolvedStem(resolved), optimiser: nativeOptimiserOptions(resolved.optimiser) }),
      resolved,
    );
  }

  /** Copies a pretrained backbone (a clamp-native checkpoint's state: other entries are ignored). */
  async loadBackbone(entries: readonly StateEntry[]): Promise<void> {
    return this.handle.loadBackbone([...entries]);
  }

  /** Backbone features [n, featureDim], evaluation mode, no gradients. */
  async features(images: Float32Array, shape: Shape): Promise<Float32Array> {
    checkImageBatch(images, shape, this.options.inChannels);
    return this.handle.features(images, [...shape]);
  }

  /** Sets the head's input standardisation from [n, featureDim] features of the labelled images. */
  async standardise(features: Float32Array): Promise<void> {
    if (!(features instanceof Float32Array) || features.length % this.featureDim !== 0 || features.length < 2 * this.featureDim) {
      throw new RangeError(`standardise needs a Float32Array of at least 2 rows of ${this.featureDim} features`);
    }
    return this.handle.standardise(features, this.featureDim);
  }

  /** One optimiser step on [n, C, H, W] images (read in place until the promise settles) and their labels. */
  async step(images: Float32Array, shape: Shape, labels: Uint8Array | Int32Array): Promise<FineTuneStepResult> {
    checkImageBatch(images, shape, this.options.inChannels);
    if (!(labels instanceof Uint8Array || labels instanceof Int32Array)) throw new TypeError('labels must be a Uint8Array or Int32Array');
    if (labels.length !== shape[0]) throw new RangeError(`${labels.length} labels for ${shape[0]} images`);
    return this.handle.step(images, [...shape], labels);
  }

  /** Class scores [n, classes], evaluation mode, no gradients. */
  async logits(images: Float32Array, shape: Shape): Promise<Float32Array> {
    checkImageBatch(images, shape, this.options.inChannels);
    return this.handle.logits(images, [...shape]);
  }

  /** The backbone under torchvision's names and `head.{weight,bias,mean,scale}`. */
  async state(): Promise<StateEntry[]> {
    return this.handle.state();
  }

  get stepsTaken(): number {
    return this.handle.stepsTaken;
  }

  get featureDim(): number {
    return this.handle.featureDim;
  }
}
