// How much to grant: the request, or less when credit is short, never zero units.
import { blocksFor, priceOrNull, unitsAffordable, type Price } from './rating.js';
import { invariant } from './errors.js';

export type Requested = { units: number } | { amount: number };

/**
 * A request for a service account, which holds the service's own units and pays one for one:
 * a request in money means the units it buys at the service's price (whole blocks), as it
 * would of money (a client need not know the subscriber holds a bundle); one in units is
 * as it is.
 */
export function inServiceUnits(requested: Requested, servicePrice: Price): { units: number } {
  return 'units' in requested ? requested : { units: unitsAffordable(requested.amount, servicePrice) };
}

export interface Grant {
  units: number;
  amountMinor: number;
}

/**
 * The grant for `requested` when `availableMinor` can be spent, after `usedUnits` of the
 * session's usage. Usage is rated on its running total, so a grant costs what it adds to
 * the total's price: the rest of the block the usage is in is paid already (units that cost
 * nothing more), and only blocks past it cost money. Returns null when not even one unit
 * can be granted (the caller answers insufficient_credit).
 */
export function computeGrant(requested: Requested, price: Price, availableMinor: number, usedUnits = 0): Grant | null {
  // Never a grant that takes the session's usage past 2^53-1 units (it could not be rated).
  const wantedUnits = Math.min('units' in requested ? requested.units : unitsAffordable(requested.amount, price), Number.MAX_SAFE_INTEGER - usedUnits);
  if (wantedUnits <= 0) return null;
  const paidBefore = priceOrNull(usedUnits, price);
  // Usage priced past 2^53-1 (reported far beyond its grants): no grant after it could be
  // rated (rateUsage charges such usage its whole hold), so none is made.
  if (paidBefore === null) return null;
  // An available figure past 2^53-1 (an optimistic caller) spends like 2^53-1; and never so
  // much that the price of the running total passes 2^53-1 (it could not be charged).
  const spendable = Math.min(Math.max(0, availableMinor), Number.MAX_SAFE_INTEGER - paidBefore);
  const costOf = (units: number) => {
    const total = priceOrNull(usedUnits + units, price);
    return total === null ? null : total - paidBefore;
  };
  // A request whose price is beyond what can be spent is simply more than can be paid: grant what fits.
  const wantedAmount = costOf(wantedUnits);
  if (wantedAmount !== null && wantedAmount <= spendable) return { units: wantedUnits, amountMinor: wantedAmount };
  // The paid rest of the block the usage is in, then whole blocks of what can be spent.
  const paidUnits = blocksFor(usedUnits, price) * price.perUnits - usedUnits;
  const affordable = Math.min(wantedUnits, paidUnits + unitsAffordable(spendable, price));
  if (affordable <= 0) return null;
  const amountMinor = costOf(affordable);
  invariant(amountMinor !== null && amountMinor <= spendable, `a grant of ${affordable} units after ${usedUnits} fits in ${spendable}`);
  return { units: affordable, amountMinor };
}

/** The full grant, assuming credit is plentiful: the first, optimistic attempt. */
export function optimisticGrant(requested: Requested, price: Price, usedUnits = 0): Grant | null {
  return computeGrant(requested, price, Number.MAX_SAFE_INTEGER, usedUnits);
}
