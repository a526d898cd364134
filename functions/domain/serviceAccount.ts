// Service accounts (seed 004): an account per classification of service, in its own unit
// (kilobytes, seconds, events), bought with money of the account that owns it. Recharges
// move money out of the owner and units in, on request, when the level falls below a
// minimum, and on a schedule; when the owner cannot fund every due recharge, lower
// priority numbers go first. Plain functions of state and clock.
import { invariant } from './errors.js';
import { MAX_BALANCE_MINOR, type Unit } from './rating.js';

/** `amountMinor` of the owner's money buys `units`. */
export interface UnitRate {
  amountMinor: number;
  units: number;
}

export type OnEmpty = 'deny' | 'redirect' | 'restrict';

export interface RechargeSchedule {
  every: 'day' | 'week' | 'month';
  /** day: hour (0-23, UTC); week: ISO weekday (1 = Monday … 7); month: day of month (1-31, clamped to the month's last day). */
  at?: number;
}

export interface ServiceAccountSettings {
  unit: Exclude<Unit, 'money'>;
  rate: UnitRate;
  priority: number;
  /** Below this many units a recharge of `rechargeAmountMinor` is triggered. */
  minimumLevel?: number;
  /** Money moved by automatic recharges, and by a manual one that names no amount. */
  rechargeAmountMinor?: number;
  schedule?: RechargeSchedule;
  onEmpty: OnEmpty;
  redirectUrl?: string;
}

/**
 * Units that `amountMinor` buys at `rate`, rounded down: a recharge never creates units nobody
 * paid for. Null when that is more than an account may hold (MAX_BALANCE_MINOR, units or
 * money alike): amount (≤ 10^12) × rate.units (≤ 10^6) can pass 2^53-1, so the product is
 * taken exactly, in BigInt.
 */
export function unitsBought(amountMinor: number, rate: UnitRate): number | null {
  invariant(Number.isSafeInteger(amountMinor) && amountMinor >= 0, `amount ${amountMinor}`);
  const units = (BigInt(amountMinor) * BigInt(rate.units)) / BigInt(rate.amountMinor);
  return units <= BigInt(MAX_BALANCE_MINOR) ? Number(units) : null;
}

/**
 * What `units` cost at `rate`, rounded up: the least amount that buys them. Taken exactly, in
 * BigInt, as unitsBought is.
 */
export function costOfUnits(units: number, rate: UnitRate): number {
  invariant(Number.isSafeInteger(units) && units >= 0, `units ${units}`);
  const divisor = BigInt(rate.units);
  return Number((BigInt(units) * BigInt(rate.amountMinor) + divisor - 1n) / divisor);
}

/**
 * The recharge `amountMinor` makes at `rate`: the units it buys (rounded down) and what those
 * cost (rounded up), which is all the owner pays. The rest of the amount buys no whole unit
 * and stays with the owner: 19.99 at 10.00 a unit is one unit for 10.00, not for 19.99. The
 * cost never exceeds the amount and buys exactly those units. Null when the units are more
 * than an account may hold (unitsBought).
 */
export function rechargeOf(amountMinor: number, rate: UnitRate): { units: number; amountMinor: number } | null {
  const units = unitsBought(amountMinor, rate);
  return units === null ? null : { units, amountMinor: costOfUnits(units, rate) };
}

/** The smallest amount that buys at least one unit: a recharge below it buys nothing and is refused. */
export const smallestRechargeMinor = (rate: UnitRate) => Math.ceil(rate.amountMinor / rate.units);

/** A charge took the level from `beforeUnits` to `afterUnits`: did it cross `level` downwards? Only one of several concurrent charges can. */
export function crossedBelow(beforeUnits: number, afterUnits: number, level: number | undefined): boolean {
  return level !== undefined && beforeUnits >= level && afterUnits < level;
}

type RechargeLevels = Pick<ServiceAccountSettings, 'minimumLevel' | 'rechargeAmountMinor'>;

/**
 * Whether a PUT that took an existing service account's settings from `before` to `after`
 * must ask for a threshold recharge itself: the level is below the new minimum and the PUT
 * set or raised the minimum or gave the first rechargeAmount. Only a charge that crosses the
 * minimum downwards asks otherwise, and none will: the level is below it already. (Settings
 * that asked before have a request pending, or had it done.) A PUT that creates one
 * (`before` undefined) with a minimum and a rechargeAmount asks too: it starts empty, below
 * the level its owner asked to be kept above (API.md: a recharge happens by itself below
 * minimumLevel), as an existing empty one given a minimum does.
 */
export function putAsksForRecharge(before: RechargeLevels | undefined, after: RechargeLevels, availableUnits: number): boolean {
  if (after.minimumLevel === undefined || after.rechargeAmountMinor === undefined || availableUnits >= after.minimumLevel) return false;
  return before === undefined || before.minimumLevel === undefined || after.minimumLevel > before.minimumLevel || before.rechargeAmountMinor === undefined;
}

/** What a client is told to do when the units run out (RFC 8506 Final-Unit-Action). */
export function finalUnitActionOf(settings: Pick<ServiceAccountSettings, 'onEmpty' | 'redirectUrl'> | undefined):
  { action: 'terminate' | 'redirect' | 'restrict'; redirectUrl?: string } {
  if (settings?.onEmpty === 'redirect') return { action: 'redirect', ...(settings.redirectUrl ? { redirectUrl: settings.redirectUrl } : {}) };
  if (settings?.onEmpty === 'restrict') return { action: 'restrict' };
  return { action: 'terminate' };
}

/** The first scheduled moment strictly after `after`, in UTC. */
export function nextScheduledAt(schedule: RechargeSchedule, after: Date): Date {
  const t = after.getTime();
  if (schedule.every === 'day') {
    const hour = schedule.at ?? 0;
    let candidate = Date.UTC(after.getUTCFullYear(), after.getUTCMonth(), after.getUTCDate(), hour);
    if (candidate <= t) candidate = Date.UTC(after.getUTCFullYear(), after.getUTCMonth(), after.getUTCDate() + 1, hour);
    return new Date(candidate);
  }
  if (schedule.every === 'week') {
    const isoWeekday = schedule.at ?? 1;
    const today = after.getUTCDay() === 0 ? 7 : after.getUTCDay();
    let days = (isoWeekday - today + 7) % 7;
    let candidate = Date.UTC(after.getUTCFullYear(), after.getUTCMonth(), after.getUTCDate() + days);
    if (candidate <= t) { days += 7; candidate = Date.UTC(after.getUTCFullYear(), after.getUTCMonth(), after.getUTCDate() + days); }
    return new Date(candidate);
  }
  const dayOfMonth = schedule.at ?? 1;
  const inMonth = (year: number, month: number) => {
    const last = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
    return Date.UTC(year, month, Math.min(dayOfMonth, last));
  };
  let candidate = inMonth(after.getUTCFullYear(), after.getUTCMonth());
  if (candidate <= t) candidate = inMonth(after.getUTCFullYear(), after.getUTCMonth() + 1);
  return new Date(candidate);
}

export interface DueRecharge {
  id: string;
  priority: number;
  amountMinor: number;
}

/**
 * Which due recharges the owner's `availableMinor` funds: in priority order (lower number
 * first; ties by id so the outcome does not depend on read order), each taken whole if it
 * still fits; one that does not fit fails and the next may still fit.
 */
export function planRecharges(availableMinor: number, due: DueRecharge[]): { funded: DueRecharge[]; unfunded: DueRecharge[] } {
  const ordered = [...due].sort((a, b) => a.priority - b.priority || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const funded: DueRecharge[] = [];
  const unfunded: DueRecharge[] = [];
  let left = availableMinor;
  for (const recharge of ordered) {
    if (recharge.amountMinor <= left) { funded.push(recharge); left -= recharge.amountMinor; } else unfunded.push(recharge);
  }
  return { funded, unfunded };
}

export interface Sponsor {
  accountId: string;
  priority: number;
  /**
   * The most this sponsor gives in one transfer, in minor units (API name, as stored and
   * shown): a shortfall above it is not this sponsor's to pay (each pays whole or not at
   * all), and a partial grant counts no more of it. Without it, all it holds above its floor.
   */
  maxTransfer?: number;
}

/** What `sponsor`, holding `availableMinor`, may give in one transfer. */
export const sponsorGives = (sponsor: Sponsor, availableMinor: number) =>
  Math.max(0, Math.min(availableMinor, sponsor.maxTransfer ?? Number.MAX_SAFE_INTEGER));

/** Sponsors in the order they are asked (seed 003's prioritized providers). */
export const sponsorsInOrder = (sponsors: Sponsor[]) =>
  [...sponsors].sort((a, b) => a.priority - b.priority || (a.accountId < b.accountId ? -1 : 1));
