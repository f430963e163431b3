// The packing loss's options: one schema, the paper's defaults (shared/spec/packing-loss.md).
import { z } from 'zod';

export const packingLossOptionsSchema = z
  .object({
    /** Radius scale: 7 for CIFAR-10, 8.5 for ImageNet. */
    rs: z.number().finite().positive().default(7),
    /** Exponent of the soft-sphere potential (1 - d/s)^potPow. */
    potPow: z.number().finite().min(1).default(2),
    /** Pairs whose centres are closer than this are not in contact. */
    minMargin: z.number().finite().min(0).default(1e-3),
    /** Cap on the contact range r_i + r_j; where it binds it stops the gradient to the radii. */
    maxRange: z.number().finite().positive().default(1.5),
    /** Weight of the radius term sum_i r_i. */
    lw0: z.number().finite().default(0),
    /** Weight of the pair energy. */
    lw1: z.number().finite().default(1),
    /** Return log(E + 1e-6) (the paper's loss) rather than E. */
    log: z.boolean().default(true),
  })
  .strict();

export type PackingLossOptions = z.input<typeof packingLossOptionsSchema>;
export type ResolvedPackingLossOptions = z.output<typeof packingLossOptionsSchema>;
