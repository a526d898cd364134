// How much to grant: the request, or less when credit is short, never zero.
import { priceOrNull, unitsAffordable, type Price } from './rating.js';

export type Requested = { units: number } | { amount: number };

export interface Grant {
  units: number;
  amountMinor: number;
}

/**
 * The grant for `requested` when `availableMinor` can be spent. Returns null when not
 * even one block can be paid (the caller answers insufficient_credit).
 */
export function computeGrant(requested: Requested, price: Price, availableMinor: number): Grant | null {
  // An available figure past 2^53-1 (an optimistic caller) spends like 2^53-1.
  const available = Math.min(Math.max(0, availableMinor), Number.MAX_SAFE_INTEGER);
  const wantedUnits = 'units' in requested ? requested.units : unitsAffordable(requested.amount, price);
  if (wantedUnits <= 0) return null;
  // A request whose price is beyond 2^53-1 is simply more than can be paid: grant what fits.
  const wantedAmount = priceOrNull(wantedUnits, price);
  if (wantedAmount !== null && wantedAmount <= available) return { units: wantedUnits, amountMinor: wantedAmount };
  const affordable = Math.min(wantedUnits, unitsAffordable(available, price));
  if (affordable <= 0) return null;
  // Whole blocks of what `available` pays for: their price is at most `available`.
  return { units: affordable, amountMinor: priceOrNull(affordable, price)! };
}

/** The full grant, assuming credit is plentiful: the first, optimistic attempt. */
export function optimisticGrant(requested: Requested, price: Price): Grant | null {
  return computeGrant(requested, price, Number.MAX_SAFE_INTEGER);
}
