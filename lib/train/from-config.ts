// The native trainer a training config describes: one mapping from the config's sections to the
// trainer's options, shared by training and by evaluating a checkpoint.
import { scheduledSteps, type TrainConfig } from '../config/train-config.js';
import { Trainer } from './trainer.js';

/**
 * The native trainer a config describes, for a dataset of `channels` channels and `stepsPerEpoch`
 * steps an epoch (the schedule is laid out in steps). Weights come from run.seed.
 */
export async function trainerFor(config: TrainConfig, channels: number, stepsPerEpoch: number): Promise<Trainer> {
  const totalSteps = scheduledSteps(config.schedule, stepsPerEpoch);
  return Trainer.create({
    backbone: config.model.backbone,
    stem: config.model.stem,
    widths: config.model.widths,
    blocks: config.model.blocks,
    inChannels: channels,
    projectorHidden: config.model.projectorHidden,
    projectorOut: config.model.projectorOut,
    views: config.run.views,
    loss: config.loss,
    optimiser: config.optimiser,
    schedule: {
      peakLr: (config.schedule.baseLr * config.run.batchSize) / 256,
      warmupSteps: Math.min(totalSteps - 1, Math.round(config.schedule.warmupEpochs * stepsPerEpoch)),
      totalSteps,
      startLr: config.schedule.startLr,
      finalLr: config.schedule.finalLr,
    },
    device: config.run.device,
    precision: config.run.precision,
    memoryFormat: config.run.memoryFormat,
    seed: config.run.seed,
    syncBatchNorm: config.run.syncBatchNorm,
  });
}
