// Reading a POST /v1/embeddings request: which body format its Content-Type names, its body (never more
// than the size limit is buffered), and the encoded images in it. Every refusal is an HttpError whose
// status and message go back to the client as they are.
import type { IncomingMessage } from 'node:http';

/** A refusal the client is told about: its status, a message naming the problem and the fix, extra headers. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

/** The client closed the connection before its body arrived: there is no one to answer. */
export class ClientGoneError extends Error {
  constructor() {
    super('the client closed the connection before sending the whole request body');
    this.name = 'ClientGoneError';
  }
}

export type BodyKind = 'json' | 'image';

const IMAGE_TYPES = new Set(['image/png', 'image/jpeg', 'image/jpg', 'image/webp', 'application/octet-stream']);

export const BODY_FORMATS =
  'Content-Type: application/json with {"images": ["<base64>", ...]}, or image/png, image/jpeg, image/webp or application/octet-stream with the bytes of one image';

/** The body format a Content-Type names (parameters such as charset are ignored). */
export function bodyKind(contentType: string | undefined): BodyKind {
  const type = contentType?.split(';')[0]!.trim().toLowerCase() ?? '';
  if (type === 'application/json') return 'json';
  if (IMAGE_TYPES.has(type)) return 'image';
  const got = type === '' ? 'no Content-Type' : `Content-Type ${type}`;
  throw new HttpError(415, `POST /v1/embeddings got ${got}; send ${BODY_FORMATS}`);
}

/** Refuses a body whose declared Content-Length is over the limit before a byte of it is read. */
export function checkDeclaredLength(request: IncomingMessage, maxBytes: number): void {
  const declared = request.headers['content-length'];
  if (declared !== undefined && Number(declared) > maxBytes) throw tooLarge(`${declared} bytes`, maxBytes);
}

const tooLarge = (size: string, maxBytes: number) =>
  new HttpError(
    413,
    `the request body is ${size}, over this server's limit of ${maxBytes} bytes (--max-body-mb); send fewer or smaller images per request`,
  );

/**
 * The whole body, refused with 413 as soon as it passes maxBytes (a chunked body declares no length).
 * After a refusal the rest is read and dropped rather than left unread: closing a socket with unread
 * data resets the connection, and the client would see ECONNRESET instead of the 413.
 */
export function readBody(request: IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      request.off('data', onData);
      request.resume();
      chunks.length = 0;
      reject(tooLarge(`more than ${maxBytes} bytes`, maxBytes));
    };
    request.on('data', onData);
    request.once('end', () => resolve(Buffer.concat(chunks, size)));
    request.once('close', () => {
      if (!request.complete) reject(new ClientGoneError());
    });
    request.once('error', () => reject(new ClientGoneError()));
  });
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The bytes of one base64 string (whitespace and a data: URL prefix allowed), or a 400 naming the image. */
function base64Image(value: unknown, index: number): Buffer {
  if (typeof value !== 'string')
    throw new HttpError(
      400,
      `images[${index}] is ${value === null ? 'null' : typeof value}; each image is a base64 string of a JPEG, PNG or WebP file`,
    );
  const text = value.replace(/^data:[^,]*;base64,/, '').replace(/\s+/g, '');
  if (text.length % 4 === 1 || !BASE64.test(text)) {
    throw new HttpError(
      400,
      `images[${index}] is not base64 (standard alphabet A-Z a-z 0-9 + /, = padding); encode the image file's bytes with base64`,
    );
  }
  return Buffer.from(text, 'base64');
}

/** The encoded images of a JSON body: {"images": ["<base64>", ...]}. */
function jsonImages(body: Buffer): Buffer[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new HttpError(400, `the request body is not valid JSON (${(error as Error).message}); send {"images": ["<base64>", ...]}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new HttpError(400, 'the JSON body must be an object, {"images": ["<base64>", ...]}');
  const unknown = Object.keys(parsed).filter((key) => key !== 'images');
  if (unknown.length > 0)
    throw new HttpError(
      400,
      `the JSON body has unknown field(s) ${unknown.map((k) => `"${k}"`).join(', ')}; it takes only {"images": ["<base64>", ...]}`,
    );
  const { images } = parsed as { images?: unknown };
  if (!Array.isArray(images)) throw new HttpError(400, 'the JSON body needs "images": an array of base64 strings, one per image');
  return images.map(base64Image);
}

/** The encoded images a request carries, at least one and at most maxImages. */
export function requestImages(kind: BodyKind, body: Buffer, maxImages: number): Buffer[] {
  const images = kind === 'json' ? jsonImages(body) : [body];
  if (images.length === 0) throw new HttpError(400, 'the request holds no images; send at least one');
  if (images.length > maxImages) {
    throw new HttpError(413, `the request holds ${images.length} images; at most ${maxImages} (--max-batch) go in one request: split it`);
  }
  return images;
}

/** Whether the client asked for the binary body (Accept: application/octet-stream, not with q=0). */
export function wantsBinary(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  return accept.split(',').some((range) => {
    const [type, ...parameters] = range.split(';').map((part) => part.trim().toLowerCase());
    const q = parameters.find((p) => p.startsWith('q='));
    return type === 'application/octet-stream' && (q === undefined || Number(q.slice(2)) > 0);
  });
}
