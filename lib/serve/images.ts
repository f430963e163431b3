// Encoded images from a client to one uint8 [n, side, side, channels] batch, decoded exactly as
// Encoder.embed(buffers) decodes them (lib/data/image-folder's decodeImage at the encoder's decode side
// and channels), so a served vector is the one a linked Encoder gives. Bytes from the network are
// checked before they are decoded: only JPEG, PNG and WebP signatures (never SVG or other formats
// that can name further files), and a pixel count read from the header, so a small file that
// declares a huge image is refused before it is expanded.
import sharp from 'sharp';
import { decodeImage } from '../data/image-folder.js';
import { HttpError } from './request.js';

const FORMATS: { name: string; matches: (bytes: Buffer) => boolean }[] = [
  { name: 'JPEG', matches: (b) => b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff },
  { name: 'PNG', matches: (b) => b.length >= 8 && b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) },
  { name: 'WebP', matches: (b) => b.length >= 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP' },
];

/** Refuses bytes that are not a JPEG, PNG or WebP file, naming the image and what its first bytes were. */
function checkSignature(bytes: Buffer, name: string): void {
  if (bytes.length === 0) throw new HttpError(400, `${name} is empty (0 bytes); send the bytes of a JPEG, PNG or WebP file`);
  if (FORMATS.some((format) => format.matches(bytes))) return;
  const start = Array.from(bytes.subarray(0, 8), (b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new HttpError(
    400,
    `${name} is not a JPEG, PNG or WebP file (it starts with bytes ${start}); send the image file's bytes unchanged`,
  );
}

/**
 * sharp's reason, one line. libvips keeps a per-thread error buffer, and a message can carry an earlier
 * failure of another image decoded on the same thread before the line about this one: the last line is
 * this image's.
 */
const sharpReason = (error: unknown) => ((error as Error).message ?? String(error)).trim().split('\n').pop()!.trim();

/** Reads the header only: a 0x0 or unreadable header is a 400, a declared size over maxPixels a 413. */
async function checkHeader(bytes: Buffer, name: string, maxPixels: number): Promise<void> {
  let width: number | undefined, height: number | undefined;
  try {
    ({ width, height } = await sharp(bytes).metadata());
  } catch (error) {
    throw new HttpError(400, `${name} could not be read (${sharpReason(error)}); it is corrupt or not an image: send the whole file`);
  }
  if (!width || !height) throw new HttpError(400, `${name} is ${width ?? 0}x${height ?? 0} pixels; an image needs at least 1x1`);
  if (width * height > maxPixels) {
    throw new HttpError(
      413,
      `${name} is ${width}x${height} = ${width * height} pixels, over this server's limit of ${maxPixels}; resize it before sending`,
    );
  }
}

/** One image decoded to side x side x channels bytes; a decoding failure is the client's 400. */
async function decoded(bytes: Buffer, name: string, side: number, channels: 1 | 3, maxPixels: number): Promise<Uint8Array> {
  checkSignature(bytes, name);
  await checkHeader(bytes, name, maxPixels);
  try {
    return await decodeImage(bytes, side, channels, name);
  } catch (error) {
    // decodeImage's message is written for files on disk ("replace or delete it"): only sharp's reason is kept.
    const reason = sharpReason(error)
      .replace(/^.*could not be decoded: /, '')
      .replace(/\. The file is corrupt.*$/, '');
    throw new HttpError(400, `${name} could not be decoded (${reason}); it is corrupt or truncated: send the whole file`);
  }
}

export interface DecodeGeometry {
  /** The side images are decoded to (the Encoder's decodeSize). */
  side: number;
  channels: number;
  /** The most pixels an image's header may declare. */
  maxPixels: number;
}

/** The images as one uint8 [n, side, side, channels] batch, in request order. */
export async function decodeImages(images: readonly Buffer[], { side, channels, maxPixels }: DecodeGeometry): Promise<Uint8Array> {
  const name = (k: number) => (images.length === 1 ? 'the image' : `images[${k}]`);
  const each = await Promise.all(images.map((bytes, k) => decoded(bytes, name(k), side, channels as 1 | 3, maxPixels)));
  const batch = new Uint8Array(images.length * side * side * channels);
  each.forEach((pixels, k) => batch.set(pixels, k * pixels.length));
  return batch;
}
