// What the subcommands share in reading their flags.

/** A bad flag or argument: main prints the message and the usage, and exits with status 2. */
export class UsageError extends Error {}

/** A flag that must be a whole number >= min; undefined when not given. */
export function wholeNumberFlag(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (value.trim() === '' || !Number.isInteger(number) || number < min) {
    // Every whole number is >= 0: only a higher floor is worth naming.
    throw new UsageError(`--${name} must be a whole number${min > 0 ? ` >= ${min}` : ''}, got '${value}'`);
  }
  return number;
}

/** A flag that must be a number >= min, or > min when `exclusive` (fractions allowed); undefined when not given. */
export function numberFlag(name: string, value: string | undefined, min: number, exclusive = false): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number) || number < min || (exclusive && number === min)) {
    throw new UsageError(`--${name} must be a number ${exclusive ? '>' : '>='} ${min}, got '${value}'`);
  }
  return number;
}
