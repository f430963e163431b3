// Human names of the classes, for the report's tables and legends: the datasets' published label
// orders, and an image folder's sorted sub-folders (its labels, see lib/data/image-folder.ts).
import fs from 'node:fs/promises';
import path from 'node:path';
import type { DataConfig } from '../data/datasets.js';

const FASHION_MNIST = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
const MNIST = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
const CIFAR10 = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const STL10 = ['airplane', 'bird', 'car', 'cat', 'deer', 'dog', 'horse', 'monkey', 'ship', 'truck'];

/** The class sub-folders of an image folder in label order (code-point sort, no hidden entries). */
async function folderClasses(folder: string): Promise<string[]> {
  const entries = await fs.readdir(folder, { withFileTypes: true });
  const names: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith('.')) continue;
    if ((await fs.stat(path.join(folder, entry.name)).catch(() => null))?.isDirectory()) names.push(entry.name);
  }
  return names.sort();
}

/** Names by label; an empty list when unknown (the report then shows label numbers). */
export async function classNames(data: DataConfig): Promise<string[]> {
  switch (data.dataset) {
    case 'fashion-mnist':
      return FASHION_MNIST;
    case 'mnist':
      return MNIST;
    case 'cifar10':
      return CIFAR10;
    case 'stl10':
      return STL10;
    case 'image-folder':
      return data.path ? folderClasses(data.path).catch(() => []) : [];
    default:
      return [];
  }
}
