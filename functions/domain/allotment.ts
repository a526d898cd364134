// Quota sharing (seed 003): an account attached to a main account charges its own item and,
// when short, takes an allotment (a chunk) from the main account. The main account's item
// then sees one write per chunk instead of one per charge, and the family can never
// overspend: an allotment is money moved out of the main account's available credit.

/** Chunks are this many times what was missing, so the main account is asked rarely. */
export const ALLOTMENT_FACTOR = 10;
/**
 * A member that keeps coming back (allotments taken with none given back in between) gets
 * chunks twice as large each time, up to 2^3 = 8 times: a busy member asks the main account
 * ever more rarely, an occasional one never holds more than it needs. What a large chunk
 * strands is bounded by the half-of-what-is-left rule below, and the sweep gives an idle
 * chunk back.
 */
export const MAX_DOUBLINGS = 3;

export interface AllotmentInput {
  /** What the member is missing for the operation at hand. */
  neededMinor: number;
  /** What the main account can give now; unknown on the first, optimistic try. */
  mainAvailableMinor?: number;
  consumptionLimitMinor?: number;
  takenMinor: number;
  /** Allotments taken since the last one given back (see MAX_DOUBLINGS); 0 when unknown. */
  streak?: number;
}

export type AllotmentDecision =
  | { give: number }
  | { refuse: 'insufficient' | 'limit' };

/** What a member may still take under its consumptionLimit (negative once a lowered limit is passed); unbounded without one. */
export function roomUnderLimit(consumptionLimitMinor: number | undefined, takenMinor: number): number {
  return consumptionLimitMinor === undefined ? Number.MAX_SAFE_INTEGER : consumptionLimitMinor - takenMinor;
}

/** How much to move from the main account to the member. */
export function allotmentFor(input: AllotmentInput): AllotmentDecision {
  const room = roomUnderLimit(input.consumptionLimitMinor, input.takenMinor);
  const mainAvailable = input.mainAvailableMinor ?? Number.MAX_SAFE_INTEGER;
  // When the main account runs low, no member takes more than half of what is left (but
  // always its need), so one member's chunk does not starve the others.
  const fairShare = input.mainAvailableMinor === undefined ? Number.MAX_SAFE_INTEGER : Math.max(input.neededMinor, Math.floor(mainAvailable / 2));
  const factor = ALLOTMENT_FACTOR * 2 ** Math.min(Math.max(0, input.streak ?? 0), MAX_DOUBLINGS);
  const wanted = Math.min(input.neededMinor * factor, room, mainAvailable, fairShare, Number.MAX_SAFE_INTEGER);
  if (wanted >= input.neededMinor) return { give: wanted };
  // Not enough for the whole need: give what there is, so a partial grant can still be made.
  const partial = Math.min(room, mainAvailable);
  if (partial > 0) return { give: partial };
  return { refuse: room <= 0 ? 'limit' : 'insufficient' };
}

/** What a lowered consumption limit takes back at once: the unspent allotment beyond it. */
export function excessOverLimit(takenMinor: number, limitMinor: number, memberAvailableMinor: number): number {
  return Math.max(0, Math.min(takenMinor - limitMinor, memberAvailableMinor));
}

/** The money figures of an account item. */
export interface Holding {
  balance: number;
  reserved: number;
  takenMinor?: number;
  /** Set once the account was topped up: it holds money from outside too. */
  ownMoney?: boolean;
}

/**
 * What of a member's money is still its main account's: the allotments it holds and has not
 * spent (`heldMinor`), and how much of its reservations that money backs (`reservedMinor`).
 * API.md has a member's charges "authorized against and debited from the main account": the
 * views add these back to the main account and take them out of the member.
 *
 * A member that only ever had allotments holds its main account's money and nothing else:
 * what it holds of what it took is its balance, up to what it took. A member that was ever
 * topped up holds money of its own too, and its item does not record which money a charge
 * spent (an update expression cannot take a minimum): none of its money is told apart, and
 * its allotments are shown where they are, as its money (0 held here).
 */
export function heldFromMain(member: Holding): { heldMinor: number; reservedMinor: number } {
  if (member.ownMoney) return { heldMinor: 0, reservedMinor: 0 };
  const heldMinor = Math.max(0, Math.min(member.takenMinor ?? 0, member.balance));
  return { heldMinor, reservedMinor: Math.max(0, Math.min(member.reserved, heldMinor)) };
}
