// The in-memory dataset every reader (IDX, CIFAR, STL-10, image folders) returns and every consumer
// (the loader, evaluation, the report) takes.
export interface ImageDataset {
  /** [count, channels, height, width] bytes. */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  channels: number;
  height: number;
  width: number;
  classes: number;
}
