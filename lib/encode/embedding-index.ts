// An exact nearest-neighbour index for services: cosine similarity of every query against every stored
// embedding by one matrix product on the compute thread, then the top k. Exact and simple, and linear
// in the number stored: up to a few hundred thousand vectors it answers in milliseconds; beyond that,
// swap it for a vector database (an approximate index such as HNSW), which this class's query() mirrors.
import { native } from '../runtime/native.js';

export interface Neighbour<L> {
  /** Row of the stored embeddings. */
  index: number;
  /** Cosine similarity in [-1, 1]. */
  similarity: number;
  /** The row's label, when the index was built with labels. */
  label?: L;
}

export class EmbeddingIndex<L = number> {
  private readonly bank: Float32Array;
  private readonly labels: readonly L[] | undefined;
  readonly dim: number;
  readonly size: number;

  /** Stores a copy of `embeddings` ([n, dim]) and, optionally, one label per row. */
  constructor(embeddings: { data: Float32Array; shape: readonly [number, number] }, labels?: readonly L[] | ArrayLike<L>) {
    const [n, dim] = embeddings.shape;
    if (!Number.isInteger(n) || !Number.isInteger(dim) || n < 1 || dim < 1)
      throw new RangeError(`embeddings must have shape [n, dim] with n, dim >= 1, got [${embeddings.shape.join(', ')}]`);
    if (embeddings.data.length !== n * dim)
      throw new RangeError(`embeddings of shape [${n}, ${dim}] need ${n * dim} values; data holds ${embeddings.data.length}`);
    if (labels !== undefined && labels.length !== n) throw new RangeError(`there are ${n} embeddings but ${labels.length} labels`);
    // A copy: callers often pass views of a batch's shared result buffer, or reuse their arrays.
    this.bank = embeddings.data.slice();
    this.labels = labels === undefined ? undefined : Array.from(labels);
    this.dim = dim;
    this.size = n;
  }

  /** The k most similar stored rows to each query vector ([q, dim] or one [dim] vector), best first. */
  async query(vectors: Float32Array | { data: Float32Array; shape: readonly [number, number] }, k = 10): Promise<Neighbour<L>[][]> {
    const data = vectors instanceof Float32Array ? vectors : vectors.data;
    if (!(data instanceof Float32Array))
      throw new TypeError('query vectors must be a Float32Array or { data: Float32Array, shape: [q, dim] }');
    if (data.length === 0 || data.length % this.dim !== 0)
      throw new RangeError(`query vectors must hold a whole number of rows of dim ${this.dim}, got ${data.length} values`);
    if (!(vectors instanceof Float32Array) && vectors.shape[1] !== this.dim)
      throw new RangeError(`query vectors have dim ${vectors.shape[1]}; the index holds dim ${this.dim}`);
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`k must be a whole number >= 1, got ${k}`);
    const { similarity, index, k: found } = await native().cosineTopK(this.bank, data, this.dim, k);
    const out: Neighbour<L>[][] = [];
    for (let q = 0; q < data.length / this.dim; q++) {
      const row: Neighbour<L>[] = [];
      for (let j = 0; j < found; j++) {
        const at = index[q * found + j]!;
        row.push(
          this.labels === undefined
            ? { index: at, similarity: similarity[q * found + j]! }
            : { index: at, similarity: similarity[q * found + j]!, label: this.labels[at]! },
        );
      }
      out.push(row);
    }
    return out;
  }
}
