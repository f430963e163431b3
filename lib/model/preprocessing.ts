// What a network trained under a config expects of an image: evaluation's view of the first augmentation
// pipeline (its size and normalize step) and the side images are decoded to, as the training data was.
// The Encoder hands it to the native encoder; the ONNX export bakes it into the graph and its metadata.
import type { TrainConfig } from '../config/train-config.js';
import { datasetImageSide } from '../data/datasets.js';

export interface Preprocessing {
  /** The side the backbone sees; other sizes are resized (whole image, bilinear) to it. */
  imageSize: number;
  /** The normalize step's mean and std as the config gives them (empty: none); entries repeat over the channels. */
  mean: number[];
  std: number[];
  /** The side encoded images and files are decoded to (cropped to fill the square). */
  decodeSize: number;
}

export function evaluationPreprocessing(config: TrainConfig): Preprocessing {
  const pipeline = config.augment[0]!;
  return {
    imageSize: pipeline.size,
    mean: pipeline.normalize?.mean ?? [],
    std: pipeline.normalize?.std ?? [],
    decodeSize: datasetImageSide(config.data),
  };
}
