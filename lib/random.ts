// A small seeded generator (mulberry32), so that a seed reproduces data order, augmentation and demos.

export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in (0, 1]. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 1) / 4294967297;
  }

  /** Uniform in [low, high). */
  uniform(low: number, high: number): number {
    return low + (high - low) * (this.next() - 1 / 4294967297);
  }

  /** A whole number in [low, high]. */
  integer(low: number, high: number): number {
    return Math.min(high, low + Math.floor(this.uniform(0, high - low + 1)));
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    return Math.sqrt(-2 * Math.log(this.next())) * Math.cos(2 * Math.PI * this.next());
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() <= p;
  }

  /** A random permutation of [0, n). */
  permutation(n: number): number[] {
    const order = [...Array(n).keys()];
    for (let k = n - 1; k > 0; k--) {
      const j = this.integer(0, k);
      [order[k], order[j]] = [order[j]!, order[k]!];
    }
    return order;
  }
}
