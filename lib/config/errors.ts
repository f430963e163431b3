// Turns a zod failure into the error a JavaScript caller expects: TypeError for a wrong type,
// RangeError for a value out of range, each naming the field and the value it got. A config that
// cannot even be read as settings (no such file, not JSON or YAML, a reserved key) is a ConfigError.
import type { z } from 'zod';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  return `a ${value.constructor?.name ?? typeof value}`;
}

export function validationError(error: z.ZodError, subject: string): TypeError | RangeError {
  const lines = error.issues.map((issue) => {
    const field = [subject, ...issue.path.map(String)].join('.');
    const got = 'input' in issue ? ` (got ${describeValue(issue.input)})` : '';
    return `${field}: ${issue.message}${got}`;
  });
  // zod calls NaN and Infinity the wrong type; to a JavaScript caller they are numbers out of range.
  const typeProblem = error.issues.some(
    (issue) => issue.code === 'unrecognized_keys' || (issue.code === 'invalid_type' && typeof issue.input !== 'number'),
  );
  const message = lines.join('; ');
  return typeProblem ? new TypeError(message) : new RangeError(message);
}
