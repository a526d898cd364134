// Rating: turning units into money. All integers; blocks are rounded up so a started
// block is paid in full (the way telecom tariffs bill a started minute).
import { invariant } from './errors.js';

export type Unit = 'seconds' | 'kilobytes' | 'events' | 'money';

export interface Price {
  /** Minor units of money charged per block. */
  amountMinor: number;
  /** Units in one block. */
  perUnits: number;
}

export const MONEY_PRICE: Price = { amountMinor: 1, perUnits: 1 };

export function blocksFor(units: number, price: Price): number {
  invariant(Number.isSafeInteger(units) && units >= 0, `units ${units}`);
  return Math.ceil(units / price.perUnits);
}

/** What `units` cost, blocks rounded up. */
export function priceOf(units: number, price: Price): number {
  const amount = blocksFor(units, price) * price.amountMinor;
  invariant(Number.isSafeInteger(amount), `price overflow for ${units} units`);
  return amount;
}

/**
 * What it costs to go from `previousUnits` to `previousUnits + units` of cumulative usage.
 * Rating the running total (not each report) means a session reported in ten interims
 * pays exactly what it would pay reported once: no rounding up per report.
 */
export function incrementalPriceOf(previousUnits: number, units: number, price: Price): number {
  return priceOf(previousUnits + units, price) - priceOf(previousUnits, price);
}

/** The most units `amountMinor` pays for, in whole blocks. */
export function unitsAffordable(amountMinor: number, price: Price): number {
  invariant(Number.isSafeInteger(amountMinor) && amountMinor >= 0, `amount ${amountMinor}`);
  if (price.amountMinor === 0) return Number.MAX_SAFE_INTEGER;
  return Math.floor(amountMinor / price.amountMinor) * price.perUnits;
}
