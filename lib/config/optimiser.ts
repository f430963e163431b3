// The optimisers of the training step, one schema (the learning rate itself comes from the schedule).
// Every method exempts 1-D parameters (biases, normalisation weights) from weight decay, and LARS also
// from its trust ratio, as the SSL literature does.
import { z } from 'zod';

const decay = z.number().finite().min(0);
const momentum = z.number().finite().min(0).max(1);

export const optimiserSchema = z.discriminatedUnion('name', [
  z
    .object({
      name: z.literal('lars'),
      momentum: momentum.default(0.9),
      weightDecay: decay.default(1e-6),
      eta: z.number().finite().positive().default(1e-3),
    })
    .strict(),
  z
    .object({
      name: z.literal('sgd'),
      momentum: momentum.default(0.9),
      nesterov: z.boolean().default(false),
      weightDecay: decay.default(5e-4),
    })
    .strict(),
  z
    .object({
      name: z.literal('adamw'),
      betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
      eps: z.number().finite().positive().default(1e-8),
      weightDecay: decay.default(0.05),
    })
    .strict(),
]);

export type OptimiserOptions = z.input<typeof optimiserSchema>;
export type ResolvedOptimiser = z.output<typeof optimiserSchema>;

/** The flat record the addon reads: every field present, the ones a method ignores at neutral values. */
export function nativeOptimiserOptions(o: ResolvedOptimiser) {
  return {
    name: o.name,
    weightDecay: o.weightDecay,
    momentum: 'momentum' in o ? o.momentum : 0,
    eta: o.name === 'lars' ? o.eta : 1e-3,
    nesterov: o.name === 'sgd' ? o.nesterov : false,
    beta1: o.name === 'adamw' ? o.betas[0] : 0.9,
    beta2: o.name === 'adamw' ? o.betas[1] : 0.999,
    eps: o.name === 'adamw' ? o.eps : 1e-8,
  };
}
