// An IDX file's bytes (unsigned-byte data): what the IDX tests and the fuzzer build their inputs from.
export function idx(shape: number[], values: number[]): Uint8Array {
  const header = Buffer.alloc(4 + 4 * shape.length);
  header[2] = 0x08;
  header[3] = shape.length;
  shape.forEach((n, k) => header.writeUInt32BE(n, 4 + 4 * k));
  return Buffer.concat([header, Buffer.from(values)]);
}
