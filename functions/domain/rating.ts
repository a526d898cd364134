// Rating: turning units into money. All integers; blocks are rounded up so a started
// block is paid in full (the way telecom tariffs bill a started minute).
import { fail, invariant } from './errors.js';

export type Unit = 'seconds' | 'kilobytes' | 'events' | 'money';

export interface Price {
  /** Minor units of money charged per block. */
  amountMinor: number;
  /** Units in one block. */
  perUnits: number;
}

export const MONEY_PRICE: Price = { amountMinor: 1, perUnits: 1 };

/**
 * The most an account may hold, and the most credit it may be given. Requests may carry any
 * integer up to 2^53-1 (API.md), but sums of balances, reservations and credit limits must
 * stay exact in a JavaScript number (and readable back from DynamoDB): with balance and
 * credit limit each at most 10^15 (ten trillion in major units), `available` and every sum
 * the store makes of two such figures stay far below 2^53-1.
 */
export const MAX_BALANCE_MINOR = 1e15;

export function blocksFor(units: number, price: Price): number {
  invariant(Number.isSafeInteger(units) && units >= 0, `units ${units}`);
  return Math.ceil(units / price.perUnits);
}

/** What `units` cost, blocks rounded up; null when that is beyond 2^53-1 (no account can pay it). */
export function priceOrNull(units: number, price: Price): number | null {
  const amount = blocksFor(units, price) * price.amountMinor;
  return Number.isSafeInteger(amount) ? amount : null;
}

/** What `units` cost, blocks rounded up. A price beyond 2^53-1 comes from the request's size: refused. */
export function priceOf(units: number, price: Price): number {
  return priceOrNull(units, price) ?? fail('validation_failed', `${units} units cost more than 2^53-1 minor units`);
}

/**
 * What it costs to go from `previousUnits` to `previousUnits + units` of cumulative usage.
 * Rating the running total (not each report) means a session reported in ten interims
 * pays exactly what it would pay reported once: no rounding up per report.
 */
export function incrementalPriceOf(previousUnits: number, units: number, price: Price): number {
  return priceOf(previousUnits + units, price) - priceOf(previousUnits, price);
}

/** The most units `amountMinor` pays for, in whole blocks (never beyond 2^53-1 units). */
export function unitsAffordable(amountMinor: number, price: Price): number {
  invariant(Number.isSafeInteger(amountMinor) && amountMinor >= 0, `amount ${amountMinor}`);
  const mostBlocks = Math.floor(Number.MAX_SAFE_INTEGER / price.perUnits);
  if (price.amountMinor === 0) return mostBlocks * price.perUnits;
  // Blocks first, then units: `amount / price * per` could pass 2^53-1 on the way.
  return Math.min(Math.floor(amountMinor / price.amountMinor), mostBlocks) * price.perUnits;
}
