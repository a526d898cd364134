// How much to grant: the request, or less when credit is short, never zero.
import { priceOf, unitsAffordable, type Price } from './rating.js';

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
  const wantedUnits = 'units' in requested ? requested.units : unitsAffordable(requested.amount, price);
  if (wantedUnits <= 0) return null;
  const wantedAmount = priceOf(wantedUnits, price);
  if (wantedAmount <= availableMinor) return { units: wantedUnits, amountMinor: wantedAmount };
  const affordable = Math.min(wantedUnits, unitsAffordable(Math.max(0, availableMinor), price));
  if (affordable <= 0) return null;
  return { units: affordable, amountMinor: priceOf(affordable, price) };
}

/** The full grant, assuming credit is plentiful: the first, optimistic attempt. */
export function optimisticGrant(requested: Requested, price: Price): Grant | null {
  return computeGrant(requested, price, Number.MAX_SAFE_INTEGER);
}
