// What the subcommands share in reading their flags.

/** A bad flag or argument: main prints the message and the usage, and exits with status 2. */
export class UsageError extends Error {}

/** A flag that must be a whole number >= min; undefined when not given. */
export function wholeNumberFlag(name: string, value: string | undefined, min = 0): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (value.trim() === '' || !Number.isInteger(number) || number < min) throw new UsageError(`--${name} must be a whole number >= ${min}, got '${value}'`);
  return number;
}
