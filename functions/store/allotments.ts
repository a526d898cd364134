// Allotments between an attached account and its main account (seeds 002 and 003). Moving
// money between the two items is one transaction (main update + member update + a ledger
// entry on each): all or nothing, and rare by design, one per chunk. The member's
// `allotSeq` makes concurrent takes by one member fetch once; the main account's
// `available >= :x` condition means members together can never take more than it has.
import { TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { dueShardOf, key } from './table.js';
import { cancellationReasons, withConflictRetry, type Store } from './db.js';
import { ledgerPut } from './ledger.js';
import { getAccountItem, listMembers, USABLE_CONDITION, usableAt, type AccountItem } from './accounts.js';
import { batchGetAll, plainItem } from './db.js';
import { ORPHAN_GRACE_MS } from './compaction.js';
import { allotmentFor, excessOverLimit } from '../domain/allotment.js';

export type TakeResult = 'given' | 'moved' | 'insufficient' | 'limit' | 'inactive';

/** At most this many members give back at once for one shortfall (see reclaimAllotments). */
const RECLAIM_BATCH = 10;

/** An allotment left unused this long goes back to the main account (by the sweep). */
export const IDLE_RETURN_SECONDS = 600;

function mainIsUsable(main: AccountItem | null, at: string): main is AccountItem {
  return !!main && usableAt(main, at);
}

/**
 * What of a member's money can go back to its main account: what it holds and no session
 * holds. Never its credit line (a postpaid member's `available` counts its creditLimit): a
 * give-back turns no credit into the main account's cash.
 */
const unreservedMoney = (member: AccountItem) => Math.max(0, member.balance - member.reserved);

/** Moves money from the main account to `member` so it can cover `neededMinor` more. */
export async function takeAllotment(store: Store, member: AccountItem, neededMinor: number): Promise<TakeResult> {
  // First try without reading the main account; a refusal hands back its item (ALL_OLD),
  // which sizes the next try. The main account's item sees one write per chunk.
  let main: AccountItem | null | undefined;
  let reclaimed = false;
  for (let attempt = 0; attempt < 5; attempt++) {
    const at = store.now().toISOString();
    if (main !== undefined && !mainIsUsable(main, at)) return 'inactive';
    const decision = allotmentFor({
      neededMinor, mainAvailableMinor: main?.available, consumptionLimitMinor: member.consumptionLimit, takenMinor: member.takenMinor ?? 0,
      streak: member.allotStreak ?? 0,
    });
    // The main account cannot give the need, yet the family may hold it: its members' idle
    // chunks (shown on the main account as heldByMembers) come back first, once.
    const limitBound = 'refuse' in decision && decision.refuse === 'limit';
    if (main && !reclaimed && !limitBound && main.available < neededMinor) {
      reclaimed = true;
      const back = await reclaimAllotments(store, main.accountId, neededMinor - main.available, member.accountId);
      if (back > 0) { main = { ...main, available: main.available + back }; continue; }
    }
    if ('refuse' in decision) return decision.refuse;
    const result = await transfer(store, { to: member.accountId, member, amountMinor: decision.give, at, direction: 'take' });
    if (typeof result === 'string') return result;
    main = result.main;
  }
  return 'insufficient';
}

/**
 * Brings back up to `shortMinor` of the allotments that `mainAccountId`'s members hold and no
 * session holds, largest first, so that a charge on the main account (or a member's take) is
 * not refused while the family has the money: the main account's view counts those chunks as
 * its money (accountView `heldByMembers`), and the sweep returns them only after
 * IDLE_RETURN_SECONDS. Only on a shortfall, never on the hot path. A member that moves
 * meanwhile keeps its chunk (its allotSeq guard), so the caller may still be short. Returns
 * what came back.
 */
export async function reclaimAllotments(store: Store, mainAccountId: string, shortMinor: number, exceptMemberId?: string): Promise<number> {
  const ids = (await listMembers(store, mainAccountId)).filter((id) => id !== exceptMemberId);
  if (ids.length === 0 || shortMinor <= 0) return 0;
  const members = ((await batchGetAll(store, ids.map((id) => key.account(id)), true)) as AccountItem[])
    .filter((m) => m.mainAccountId === mainAccountId)
    .map((member) => ({ member, spare: Math.min(unreservedMoney(member), member.takenMinor ?? 0) }))
    .filter((m) => m.spare > 0)
    .sort((a, b) => b.spare - a.spare);
  let left = shortMinor;
  const chosen: Array<{ member: AccountItem; amountMinor: number }> = [];
  for (const { member, spare } of members) {
    if (left <= 0 || chosen.length === RECLAIM_BATCH) break;
    const amountMinor = Math.min(spare, left);
    chosen.push({ member, amountMinor });
    left -= amountMinor;
  }
  const results = await Promise.all(chosen.map(({ member, amountMinor }) => returnAllotment(store, member, amountMinor)));
  return results.reduce((back, result, i) => back + (result === 'given' ? chosen[i]!.amountMinor : 0), 0);
}

/** Gives back `amountMinor` of a member's unspent allotment to its main account. */
export async function returnAllotment(store: Store, member: AccountItem, amountMinor: number): Promise<'given' | 'moved'> {
  if (amountMinor <= 0) return 'given';
  const result = await transfer(store, { to: member.mainAccountId!, member, amountMinor, at: store.now().toISOString(), direction: 'return' });
  return typeof result === 'string' ? result : 'moved';
}

async function transfer(store: Store, t: { to: string; member: AccountItem; amountMinor: number; at: string; direction: 'take' | 'return' }):
  Promise<'given' | 'moved' | { main: AccountItem | null }> {
  const seq = t.member.allotSeq ?? 0;
  const transferId = `allot:${t.member.accountId}:${seq + 1}`;
  const x = t.amountMinor;
  const sign = t.direction === 'take' ? 1 : -1; // seen from the member
  const mainId = t.member.mainAccountId!;
  // The due mark is shared with the account's open operations, which only set it when it is
  // absent: an orphan hold is due at its validity plus ORPHAN_GRACE_MS. So a take marks the
  // account no later than any hold taken after it can be due (it is at least a grace away),
  // and keeps a mark already there; the sweep's visit then moves the mark to the earliest of
  // the idle return (from `allottedAt`) and what the open operations need.
  const firstLookAt = new Date(Date.parse(t.at) + ORPHAN_GRACE_MS).toISOString();
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Update: {
          TableName: store.tableName, Key: key.account(mainId),
          UpdateExpression: 'SET balance = balance - :dx, available = available - :dx, allottedOut = if_not_exists(allottedOut, :zero) + :dx',
          ConditionExpression: t.direction === 'take'
            ? `attribute_exists(pk) AND ${USABLE_CONDITION} AND available >= :x`
            : 'attribute_exists(pk)',
          ExpressionAttributeNames: t.direction === 'take' ? { '#status': 'status' } : undefined,
          ExpressionAttributeValues: { ':dx': sign * x, ':zero': 0, ...(t.direction === 'take' ? { ':x': x, ':active': 'active', ':now': t.at } : {}) },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        } },
        { Update: {
          TableName: store.tableName, Key: key.account(t.member.accountId),
          // allotSeq guards the member (so `allotStreak` is read and written under the same guard).
          UpdateExpression: `SET balance = balance + :dx, available = available + :dx, takenMinor = if_not_exists(takenMinor, :zero) + :dx, allotSeq = :next, allotStreak = :streak${t.direction === 'take' ? ', allottedAt = :at, dueShard = :shard, dueAt = if_not_exists(dueAt, :look)' : ''}`,
          // A return gives back money the member holds and no session holds (see
          // unreservedMoney): its balance still covers it over the reservation as read, which
          // has not grown since (a hold landing meanwhile would make it credit).
          ConditionExpression: `${seq === 0 ? 'attribute_not_exists(allotSeq)' : 'allotSeq = :seq'}${t.direction === 'return' ? ' AND balance >= :xr AND reserved <= :r' : ''}`,
          ExpressionAttributeValues: {
            ':dx': sign * x, ':zero': 0, ':next': seq + 1, ...(seq === 0 ? {} : { ':seq': seq }),
            ':streak': t.direction === 'take' ? (t.member.allotStreak ?? 0) + 1 : 0,
            ...(t.direction === 'take' ? { ':at': t.at, ':shard': dueShardOf(t.member.accountId), ':look': firstLookAt } : { ':xr': x + t.member.reserved, ':r': t.member.reserved }),
          },
        } },
        ledgerPut(store, { accountId: mainId, entryId: `${transferId}:main`, at: t.at, type: 'allotment', amount: -sign * x, reservedDelta: 0, counterparty: t.member.accountId }),
        ledgerPut(store, { accountId: t.member.accountId, entryId: `${transferId}:member`, at: t.at, type: 'allotment', amount: sign * x, reservedDelta: 0, counterparty: mainId }),
      ],
    })));
  } catch (error) {
    const reasons = cancellationReasons(error);
    if (!reasons) throw error;
    if (reasons[1]?.Code === 'ConditionalCheckFailed') return 'moved'; // the member changed: its caller looks again
    if (reasons[0]?.Code === 'ConditionalCheckFailed') return { main: (plainItem(reasons[0].Item) as AccountItem | undefined) ?? null };
    throw error;
  }
  return 'given';
}

/** A lowered consumption limit binds the next grant: the unspent allotment beyond it goes back now. */
export async function applyConsumptionLimit(store: Store, accountId: string, limitMinor: number | null): Promise<void> {
  // allotSeq moves too: a take sized by the old limit, from a read before this write, is
  // guarded by allotSeq and must not land after it.
  await store.db.send(new UpdateCommand({
    TableName: store.tableName, Key: key.account(accountId),
    UpdateExpression: limitMinor === null
      ? 'SET allotSeq = if_not_exists(allotSeq, :zero) + :one REMOVE consumptionLimit'
      : 'SET consumptionLimit = :l, allotSeq = if_not_exists(allotSeq, :zero) + :one',
    ConditionExpression: 'attribute_exists(mainAccountId)',
    ExpressionAttributeValues: { ':zero': 0, ':one': 1, ...(limitMinor === null ? {} : { ':l': limitMinor }) },
  }));
  if (limitMinor === null) return;
  for (let attempt = 0; attempt < 4; attempt++) {
    const member = (await getAccountItem(store, accountId))!;
    const back = excessOverLimit(member.takenMinor ?? 0, limitMinor, unreservedMoney(member));
    if ((await returnAllotment(store, member, back)) === 'given') return;
  }
}

export interface IdleReturn {
  outcome: 'returned' | 'busy' | 'gone';
  /** When the allotment needs a look again (null: nothing taken is left to give back). */
  next: string | null;
  /** The member's allotSeq after this visit: the sweep unmarks the account only if it is unchanged. */
  allotSeq: number;
}

/**
 * The sweep: an allotment unused for IDLE_RETURN_SECONDS goes back to the main account for
 * others. It writes no due mark itself: the sweep sets the account's mark to the earliest of
 * this and what the account's open operations need (an orphan hold must not wait for it).
 */
export async function returnIdleAllotment(store: Store, accountId: string): Promise<IdleReturn> {
  const member = await getAccountItem(store, accountId);
  if (!member?.mainAccountId) return { outcome: 'gone', next: null, allotSeq: member?.allotSeq ?? 0 };
  const nowMs = store.now().getTime();
  const allotSeq = member.allotSeq ?? 0;
  const busyUntil = (ms: number): IdleReturn => ({ outcome: 'busy', next: new Date(ms).toISOString(), allotSeq });
  const idleFromMs = member.allottedAt ? Date.parse(member.allottedAt) + IDLE_RETURN_SECONDS * 1000 : nowMs;
  if (idleFromMs > nowMs) return busyUntil(idleFromMs); // taken lately (the mark was set sooner, by an operation)
  if (member.reserved > 0) return busyUntil(nowMs + IDLE_RETURN_SECONDS * 1000); // sessions are running on it
  const back = Math.min(unreservedMoney(member), member.takenMinor ?? 0);
  if (back <= 0) return { outcome: 'gone', next: null, allotSeq };
  if ((await returnAllotment(store, member, back)) !== 'given') return busyUntil(nowMs); // it changed meanwhile: the next run looks
  return { outcome: 'returned', next: null, allotSeq: allotSeq + 1 };
}
