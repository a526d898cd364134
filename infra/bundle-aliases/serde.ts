// Stands in for @smithy/core/serde in the Lambda bundles (an esbuild alias in
// infra/bundling.ts): everything the package's entry exports, from the package's own files,
// but its five date parsers and formatter, whose strict RFC 3339 / RFC 7231 grammars
// (date-utils.js, ~3.7 KB) are in every bundle and never run there:
// - the DynamoDB and EventBridge operations the functions call have no timestamp in their
//   answers, and the JSON protocols write a timestamp (EventBridge's `Time`) as epoch seconds;
// - the one other reader, the retry middleware's `Retry-After` hint, catches a parse error
//   and falls back to its own backoff.
// The epoch parser is the package's (the JSON protocols' default format); the others accept
// what the Date constructor accepts, as the SDK's own deserializer does for a timestamp of no
// known format, and refuse an invalid date as the package does. Local runs and tests import
// the package itself.
// (The dist-es files carry no declarations; the bundles need none.)
// @ts-ignore
export * from '../../node_modules/@smithy/core/dist-es/submodules/serde/index.js';
// @ts-ignore
import { strictParseDouble } from '../../node_modules/@smithy/core/dist-es/submodules/serde/parse-utils.js';

function dateOf(value: unknown, kind: string): Date | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'string') throw new TypeError(`${kind} timestamps must be strings`);
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new TypeError(`Invalid ${kind} date-time value`);
  return date;
}

// Explicit exports: they take precedence over the `export *` above.
export const dateToUtcString = (date: Date) => date.toUTCString();
export const parseRfc3339DateTime = (value: unknown) => dateOf(value, 'RFC-3339');
export const parseRfc3339DateTimeWithOffset = (value: unknown) => dateOf(value, 'RFC-3339');
export const parseRfc7231DateTime = (value: unknown) => dateOf(value, 'RFC-7231');
export const parseEpochTimestamp = (value: unknown) => {
  if (value === null || value === undefined) return undefined;
  let seconds: number;
  if (typeof value === 'number') seconds = value;
  else if (typeof value === 'string') seconds = strictParseDouble(value);
  else if (typeof value === 'object' && (value as { tag?: number }).tag === 1) seconds = (value as { value: number }).value;
  else throw new TypeError('Epoch timestamps must be expressed as floating point numbers or their string representation');
  if (!Number.isFinite(seconds)) throw new TypeError('Epoch timestamps must be valid, non-Infinite, non-NaN numerics');
  return new Date(Math.round(seconds * 1000));
};
