// A worker of MultiViewLoader: builds whole multi-view batches from the shared dataset bytes.
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import type { ImageDataset } from '../data/image-dataset.js';
import { Random } from '../random.js';
import { evaluationBatch, multiViewBatch, type Augmentation } from './pipeline.js';

export interface LoaderWorkerData {
  images: SharedArrayBuffer;
  labels: SharedArrayBuffer;
  meta: Omit<ImageDataset, 'images' | 'labels'>;
  views: number;
  pipelines: Augmentation[];
  /** Run this thread at the lowest priority (nice 19): see MultiViewLoaderOptions.workerPriority. */
  lowPriority: boolean;
}

export interface BatchRequest {
  id: number;
  indices: number[];
  seed: number;
  /** Un-augmented evaluation views (one per image, first pipeline's size and normalisation). */
  evaluation?: boolean;
}

export type BatchReply = { id: number; data: Float32Array; shape: [number, number, number, number] } | { id: number; error: string };

const setup = workerData as LoaderWorkerData;
// On Linux a priority set with pid 0 is the calling thread's alone, so the JS thread and LibTorch's
// threads keep theirs. Where the system refuses (a sandbox), the worker runs at normal priority.
if (setup.lowPriority) {
  try {
    os.setPriority(19);
  } catch {
    // Not fatal: only the step's throughput is at stake.
  }
}
const dataset: ImageDataset = { ...setup.meta, images: new Uint8Array(setup.images), labels: new Uint8Array(setup.labels) };

parentPort!.on('message', (request: BatchRequest) => {
  try {
    const batch = request.evaluation
      ? evaluationBatch(dataset, request.indices, setup.pipelines[0]!)
      : multiViewBatch(dataset, request.indices, setup.views, setup.pipelines, new Random(request.seed));
    parentPort!.postMessage({ id: request.id, ...batch } satisfies BatchReply, [batch.data.buffer as ArrayBuffer]);
  } catch (error) {
    parentPort!.postMessage({ id: request.id, error: (error as Error).message } satisfies BatchReply);
  }
});
