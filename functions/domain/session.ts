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

/**
 * What a report of `usedUnits` more charges: the price of the running total less what the
 * session charged so far, capped at the hold. After a report over its grant the charge was
 * capped, so what it left unpaid is charged by later reports, from what later grants held
 * for it (see computeGrant); whatever no hold covers is never charged (fails before: rated
 * from the price of the usage before, a report of 3601 s on a 3600 s grant priced per hour
 * left the second hour free).
 */
export function rateUsage(hold: Hold, usedUnits: number, price: Price): Usage {
  const usedUnitsTotal = hold.usedUnits + usedUnits;
  // The running total is stored and rated: past 2^53-1 it would no longer be exact.
  if (!Number.isSafeInteger(usedUnitsTotal)) fail('validation_failed', `used.units brings the session's usage past 2^53-1 units`);
  // Usage priced beyond 2^53-1 is simply more than the hold: the hold is what is charged.
  const totalPrice = priceOrNull(usedUnitsTotal, price);
  invariant(totalPrice === null || hold.chargedMinor <= totalPrice, `charged ${hold.chargedMinor} for ${usedUnitsTotal} units costing ${totalPrice}`);
  const fullCharge = totalPrice === null ? Number.MAX_SAFE_INTEGER : totalPrice - hold.chargedMinor;
  const chargeMinor = Math.min(fullCharge, hold.holdMinor);
  return {
    chargeMinor,
    unchargedMinor: fullCharge - chargeMinor,
    usedUnitsTotal,
    chargedMinorTotal: hold.chargedMinor + chargeMinor,
    remainderMinor: hold.holdMinor - chargeMinor,
  };
}

/**
 * A step that charges nothing: a release (API.md: the reservation goes back uncharged) and
 * an expiry. What an earlier report over its grant left unpaid stays unpaid.
 */
export function chargeNothing(hold: Hold): Usage {
  return { chargeMinor: 0, unchargedMinor: 0, usedUnitsTotal: hold.usedUnits, chargedMinorTotal: hold.chargedMinor, remainderMinor: hold.holdMinor };
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
  // Priced after the usage reported so far and what it was charged (see computeGrant).
  const soFar = { usedUnits: usage.usedUnitsTotal, chargedMinor: usage.chargedMinorTotal };
  if (accountAvailableMinor === undefined) return optimisticGrant(requested, price, soFar);
  return computeGrant(requested, price, accountAvailableMinor + usage.remainderMinor, soFar);
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

/**
 * The refusal of a release (a refund without amount) of a session no longer active, in the
 * same words whichever check meets it: before the step, or in it when the session closed
 * meanwhile (a repeat gets the original answer; fails before: a release that lost a race
 * with the debit was told one thing, its repeat another).
 */
export function releaseClosed(sessionId: string, state: SessionState): never {
  return sessionClosed(sessionId, state, ': only an amount of what it charged can be refunded');
}

export function isOpen(state: SessionState): boolean {
  return state === 'active' || state === 'pending_agreement';
}

/** What may still be refunded of a closed session. */
export function refundable(chargedMinor: number, refundedMinor: number): number {
  return Math.max(0, chargedMinor - refundedMinor);
}
