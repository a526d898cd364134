// Multi-party sessions (seed 000): two or more parties use one service; before it starts they
// agree on a principle that decides who pays, and each is verified able to pay the most it
// could owe under it. Pure rules; amounts in minor units.
import { fail, invariant } from './errors.js';

export type Principle =
  | { type: 'loser-pays' }
  | { type: 'split' }
  | { type: 'initiator-pays' }
  | { type: 'shares'; shares: Record<string, number> };

export interface Outcome {
  loser?: string;
}

/** Checks a principle against its parties; a bad one is the caller's mistake. */
export function validatePrinciple(principle: Principle, parties: string[]): void {
  if (parties.length < 2) fail('validation_failed', 'a multi-party session needs two or more parties');
  if (new Set(parties).size !== parties.length) fail('validation_failed', 'a party is listed twice');
  if (principle.type === 'shares') {
    const named = Object.keys(principle.shares);
    if (named.length !== parties.length || named.some((p) => !parties.includes(p))) {
      fail('validation_failed', 'shares must name every party, and only them');
    }
    if (Object.values(principle.shares).reduce((a, b) => a + b, 0) !== 100) fail('validation_failed', 'shares must add up to 100');
  }
}

/**
 * Splits `amount` by integer weights with the largest-remainder method: every part is the
 * floor of its exact share, and the cents left over go one each to the largest remainders,
 * ties to the party listed first. The parts always add up to `amount` exactly.
 */
export function apportion(amount: number, weights: number[]): number[] {
  const total = weights.reduce((a, b) => a + b, 0);
  invariant(Number.isSafeInteger(amount) && amount >= 0 && total > 0 && Number.isSafeInteger(total) && weights.every(Number.isSafeInteger), 'apportion of a safe integer by integer weights');
  // amount = whole · total + rest: each party's exact share is whole · w + rest · w / total,
  // so only `rest` (< total) needs splitting. rest · w can still pass 2^53-1 when the weights
  // are large (a refund of a game by what each party paid: fails before, a 500 for a game of
  // a million euros a party; review 6 of stop 26), so it is a BigInt; its quotient (< w) and
  // remainder (< total) are safe again. The remainders, and so the tie-breaks, are those of amount · w.
  const rest = amount % total;
  const whole = (amount - rest) / total;
  const bigTotal = BigInt(total);
  const products = weights.map((w) => BigInt(rest) * BigInt(w));
  const parts = products.map((p, i) => whole * weights[i]! + Number(p / bigTotal));
  let left = amount - parts.reduce((a, b) => a + b, 0);
  const order = products.map((p, i) => ({ i, r: Number(p % bigTotal) })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (const { i } of order) {
    if (left === 0) break;
    parts[i]! += 1;
    left -= 1;
  }
  invariant(left === 0, 'apportioned parts add up');
  return parts;
}

/** What each party pays of `amount` under the principle and the outcome. */
export function charges(principle: Principle, parties: string[], amount: number, outcome: Outcome = {}): number[] {
  switch (principle.type) {
    case 'loser-pays': {
      const loser = outcome.loser ?? fail('validation_failed', 'loser-pays needs outcome.loser');
      if (!parties.includes(loser)) fail('validation_failed', `outcome.loser ${loser} is not a party`);
      return parties.map((p) => (p === loser ? amount : 0));
    }
    case 'initiator-pays':
      return parties.map((_, i) => (i === 0 ? amount : 0));
    case 'split':
      return apportion(amount, parties.map(() => 1));
    case 'shares':
      return apportion(amount, parties.map((p) => principle.shares[p]!));
  }
}

/**
 * The most each party could owe when the service costs at most `maxAmount`: what is
 * reserved from it. Whatever the outcome and the final cost (≤ maxAmount), a party's charge
 * never exceeds this.
 */
export function mostPossibleShares(principle: Principle, parties: string[], maxAmount: number): number[] {
  switch (principle.type) {
    case 'loser-pays':
      return parties.map(() => maxAmount);
    case 'initiator-pays':
      return parties.map((_, i) => (i === 0 ? maxAmount : 0));
    case 'split':
      return parties.map(() => Math.ceil(maxAmount / parties.length));
    case 'shares':
      // The largest-remainder part of any amount ≤ max is at most ceil(max · share / 100),
      // computed on max = hundreds · 100 + rest so that max · share never passes 2^53-1.
      return parties.map((p) => {
        const share = principle.shares[p]!;
        const rest = maxAmount % 100;
        return ((maxAmount - rest) / 100) * share + Math.ceil((rest * share) / 100);
      });
  }
}

/**
 * What each party pays of `amount` when the session ends with no final debit (a release, the
 * sweep's expiry): the usage recorded so far is charged by the principle, as a debit would.
 * Loser-pays knows no loser then (the game was not played to its end): the parties split it,
 * which never passes what each holds (every party holds the whole most possible cost).
 */
export function chargesWithoutOutcome(principle: Principle, parties: string[], amount: number): number[] {
  return charges(principle.type === 'loser-pays' ? { type: 'split' } : principle, parties, amount);
}
