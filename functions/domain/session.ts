// A charging session's money, as TigerBeetle would see it: one pending hold per session
// that each report partly posts (debits) and re-reserves, and termination posts and voids.
// Everything here is a pure function of the hold, the command and the price.
import { computeGrant, optimisticGrant, type Grant, type Requested } from './reservation.js';
import { priceOrNull, type Price } from './rating.js';
import { fail, invariant } from './errors.js';

/** The state of one session's hold, as recorded on the charged account item. */
export interface Hold {
  seq: number;
  /** Money currently reserved for the session. */
  holdMinor: number;
  /** Units of the current grant. */
  grantedUnits: number;
  usedUnits: number;
  chargedMinor: number;
}

export interface Usage {
  /** What the reported usage costs, capped at the hold: never more than was reserved. */
  chargeMinor: number;
  /** What the usage would have cost beyond the hold (reported over the grant); not charged. */
  unchargedMinor: number;
  usedUnitsTotal: number;
  chargedMinorTotal: number;
  /** What stays of the hold after the charge. */
  remainderMinor: number;
}

export function rateUsage(hold: Hold, usedUnits: number, price: Price): Usage {
  const usedUnitsTotal = hold.usedUnits + usedUnits;
  // The running total is stored and rated: past 2^53-1 it would no longer be exact.
  if (!Number.isSafeInteger(usedUnitsTotal)) fail('validation_failed', `used.units brings the session's usage past 2^53-1 units`);
  // Usage priced beyond 2^53-1 is simply more than the hold: the hold is what is charged.
  const totalPrice = priceOrNull(usedUnitsTotal, price);
  const previousPrice = priceOrNull(hold.usedUnits, price);
  const fullCharge = totalPrice === null || previousPrice === null ? Number.MAX_SAFE_INTEGER : totalPrice - previousPrice;
  const chargeMinor = Math.min(fullCharge, hold.holdMinor);
  return {
    chargeMinor,
    unchargedMinor: fullCharge - chargeMinor,
    usedUnitsTotal,
    chargedMinorTotal: hold.chargedMinor + chargeMinor,
    remainderMinor: hold.holdMinor - chargeMinor,
  };
}

/** Signed changes to an account's three money attributes. */
export interface Movement {
  balanceDelta: number;
  reservedDelta: number;
  availableDelta: number;
}

/** The account movement of charging `usage` and replacing the hold by `newHoldMinor`. */
export function movementFor(hold: Hold, usage: Usage, newHoldMinor: number): Movement {
  const movement = {
    balanceDelta: -usage.chargeMinor,
    reservedDelta: newHoldMinor - hold.holdMinor,
    // available = balance - reserved (+ creditLimit), so it moves by both.
    availableDelta: -usage.chargeMinor - (newHoldMinor - hold.holdMinor),
  };
  invariant(movement.availableDelta === movement.balanceDelta - movement.reservedDelta, 'movement adds up');
  return movement;
}

/**
 * The grant of an interim report: the optimistic one first; after the account refused it,
 * the one that fits in what the account had plus what the report releases.
 */
export function regrant(requested: Requested | undefined, price: Price, usage: Usage, accountAvailableMinor?: number): Grant | null {
  if (!requested) return { units: 0, amountMinor: 0 };
  // Priced after the usage reported so far (see computeGrant: the block it is in is paid).
  if (accountAvailableMinor === undefined) return optimisticGrant(requested, price, usage.usedUnitsTotal);
  return computeGrant(requested, price, accountAvailableMinor + usage.remainderMinor, usage.usedUnitsTotal);
}

/** `refused`: a reserve an existing account refused (short of credit, inactive); it holds nothing and keeps the refusal for repeats. */
export type SessionState = 'pending_agreement' | 'active' | 'closed' | 'expired' | 'released' | 'refused';

/**
 * The state as answers and GET show it. API.md has a release (a refund without amount of an
 * active session) close the session: it shows `closed`, with `released: true` to tell it from
 * a final debit. Inside, `released` stays a state of its own (the ops entry, the simulator).
 */
export function shownState(state: SessionState): { state: Exclude<SessionState, 'released'>; released?: true } {
  return state === 'released' ? { state: 'closed', released: true } : { state };
}

/** The refusal of a step on a session that is no longer active: `session_closed`, with the state as shown. */
export function sessionClosed(sessionId: string, state: SessionState, why = ''): never {
  const shown = shownState(state);
  return fail('session_closed', `session ${sessionId} is ${shown.state}${why}`, shown);
}

export function isOpen(state: SessionState): boolean {
  return state === 'active' || state === 'pending_agreement';
}

/** What may still be refunded of a closed session. */
export function refundable(chargedMinor: number, refundedMinor: number): number {
  return Math.max(0, chargedMinor - refundedMinor);
}
