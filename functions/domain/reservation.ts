// How much to grant: the request, or less when credit is short, never zero units.
import { priceOrNull, unitsAffordable, type Price } from './rating.js';
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
 * Where a session's running total stands: the units reported so far and what they were
 * charged. `chargedMinor` is at most their price, and less when a report went past what the
 * session held (the charge is capped at the hold): the rest of that block is then not paid.
 */
export interface SoFar {
  usedUnits: number;
  chargedMinor: number;
}

const NOTHING_YET: SoFar = { usedUnits: 0, chargedMinor: 0 };

/**
 * The units an ask of `amountMinor` wants: whole blocks' worth at the price, and never more
 * than the amount pays for on the running total, so a grant never holds more than was asked:
 * after a report over its grant, the amount pays the block that report left unpaid first
 * (fails before: such an ask held up to twice its amount; review 5). Without such a block,
 * this is the blocks' worth (the rest of a paid block is not counted).
 */
function unitsForAmount(amountMinor: number, price: Price, soFar: SoFar): number {
  const blocksWorth = unitsAffordable(amountMinor, price);
  const room = Number.MAX_SAFE_INTEGER - soFar.chargedMinor;
  if (amountMinor > room) return blocksWorth;
  return Math.min(blocksWorth, unitsAffordable(soFar.chargedMinor + amountMinor, price) - soFar.usedUnits);
}

/**
 * The grant for `requested` when `availableMinor` can be spent, after the session's usage
 * `soFar`. Usage is rated on its running total, so a grant costs what takes the total's
 * charge to the price of the total with the grant used: the rest of a block already paid
 * costs nothing more, and a block that a report over its grant started but did not pay is
 * paid first (fails before: rated as paid, the rest of that block was granted free, and
 * up to one block of usage went uncharged per overrun). Returns null when not even one unit
 * can be granted (the caller answers insufficient_credit).
 */
export function computeGrant(requested: Requested, price: Price, availableMinor: number, soFar: SoFar = NOTHING_YET): Grant | null {
  const { usedUnits, chargedMinor } = soFar;
  // Never a grant that takes the session's usage past 2^53-1 units (it could not be rated).
  const wantedUnits = Math.min('units' in requested ? requested.units : unitsForAmount(requested.amount, price, soFar), Number.MAX_SAFE_INTEGER - usedUnits);
  if (wantedUnits <= 0) return null;
  const priceSoFar = priceOrNull(usedUnits, price);
  // Usage priced past 2^53-1 (reported far beyond its grants): no grant after it could be
  // rated (rateUsage charges such usage its whole hold), so none is made.
  if (priceSoFar === null) return null;
  invariant(Number.isSafeInteger(chargedMinor) && chargedMinor >= 0 && chargedMinor <= priceSoFar, `charged ${chargedMinor} for ${usedUnits} units costing ${priceSoFar}`);
  // An available figure past 2^53-1 (an optimistic caller) spends like 2^53-1; and never so
  // much that the charge of the running total passes 2^53-1 (it could not be charged).
  const spendable = Math.min(Math.max(0, availableMinor), Number.MAX_SAFE_INTEGER - chargedMinor);
  const costOf = (units: number) => {
    const total = priceOrNull(usedUnits + units, price);
    return total === null ? null : total - chargedMinor;
  };
  // A request whose price is beyond what can be spent is simply more than can be paid: grant what fits.
  const wantedAmount = costOf(wantedUnits);
  if (wantedAmount !== null && wantedAmount <= spendable) return { units: wantedUnits, amountMinor: wantedAmount };
  // The whole blocks that what was charged and what can be spent pay for together, past the usage.
  const affordable = Math.min(wantedUnits, unitsAffordable(chargedMinor + spendable, price) - usedUnits);
  if (affordable <= 0) return null;
  const amountMinor = costOf(affordable);
  invariant(amountMinor !== null && amountMinor >= 0 && amountMinor <= spendable, `a grant of ${affordable} units after ${usedUnits} fits in ${spendable}`);
  return { units: affordable, amountMinor };
}

/** The full grant, assuming credit is plentiful: the first, optimistic attempt. */
export function optimisticGrant(requested: Requested, price: Price, soFar: SoFar = NOTHING_YET): Grant | null {
  return computeGrant(requested, price, Number.MAX_SAFE_INTEGER, soFar);
}
