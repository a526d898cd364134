// Allotments between an attached account and its main account (seeds 002 and 003). Moving
// money between the two items is one transaction (main update + member update + a ledger
// entry on each): all or nothing, and rare by design, one per chunk. The member's
// `allotSeq` makes concurrent takes by one member fetch once; the main account's
// `available >= :x` condition means members together can never take more than it has.
// When the main account is short while members hold idle chunks, the family's money still
// serves: a member takes them from its siblings directly (lateral allotments, which leave the
// main account's item alone), and the main account's own charge brings them back to it.
import { TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { dueShardOf, key } from './table.js';
import { cancellationReasons, conditionFailedAt, withConflictRetry, type Store } from './db.js';
import { ledgerPut } from './ledger.js';
import { getAccountItem, listMembers, USABLE_CONDITION, usableAt, type AccountItem } from './accounts.js';
import { batchGetAll, plainItem } from './db.js';
import { ORPHAN_GRACE_MS } from './compaction.js';
import { lowBalanceAfter } from './serviceAccounts.js';
import { allotmentFor, excessOverLimit, heldFromMain, roomUnderLimit } from '../domain/allotment.js';

export type TakeResult = 'given' | 'moved' | 'insufficient' | 'limit' | 'inactive';

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

/**
 * An account short of `shortMinor` looks to its family (seeds 002, 003) before it is refused:
 * an attached account takes an allotment from its main account (`taken`; write again when
 * given or moved), and a main account with allotments out brings back its members' idle ones
 * (`reclaimedMinor`; write again whatever came back: a concurrent charge, or a duplicate of
 * the same request, may have brought them back first, and a refusal on the account as read
 * before would be wrong, and kept). Null: the account has no family money to look to.
 */
export async function coverFromFamily(store: Store, account: AccountItem, shortMinor: number):
  Promise<{ retry: boolean; taken?: TakeResult; reclaimedMinor?: number; contended?: boolean; spareMinor?: number } | null> {
  if (account.mainAccountId) {
    const taken = await takeAllotment(store, account, shortMinor);
    return { retry: taken === 'given' || taken === 'moved', taken };
  }
  if ((account.allottedOut ?? 0) > 0) {
    const reclaimed = await reclaimAllotments(store, account.accountId, shortMinor);
    return { retry: true, reclaimedMinor: reclaimed.backMinor, contended: reclaimed.contended, spareMinor: reclaimed.spareMinor };
  }
  return null;
}

/** Moves money from the main account to `member` so it can cover `neededMinor` more. */
export async function takeAllotment(store: Store, member: AccountItem, neededMinor: number): Promise<TakeResult> {
  // First try without reading the main account; a refusal hands back its item (ALL_OLD),
  // which sizes the next try. The main account's item sees one write per chunk.
  let main: AccountItem | null | undefined;
  let current = member;
  let stillNeeded = neededMinor;
  let fromSiblings = false;
  for (let attempt = 0; attempt < 6; attempt++) {
    const at = store.now().toISOString();
    if (main !== undefined && !mainIsUsable(main, at)) return 'inactive';
    const sizing = { neededMinor: stillNeeded, consumptionLimitMinor: current.consumptionLimit, takenMinor: current.takenMinor ?? 0, streak: current.allotStreak ?? 0 };
    const decision = allotmentFor({ ...sizing, mainAvailableMinor: main?.available });
    // The main account cannot give the need, yet the family may hold it: its members' idle
    // chunks (shown on the main account as heldByMembers). They come straight to this member
    // (takeFromSiblings), without writing the main account's item: in a family whose money
    // all sits in chunks, members drawing on each other would otherwise write it twice per
    // chunk (a give-back and a take). Then the main account is read again for the rest: a
    // concurrent charge may have brought chunks back to it meanwhile.
    const limitBound = 'refuse' in decision && decision.refuse === 'limit';
    if (main && !fromSiblings && !limitBound && main.available < stillNeeded) {
      fromSiblings = true;
      const chunk = allotmentFor(sizing);
      const moved = await takeFromSiblings(store, current, main.accountId, stillNeeded - main.available, 'give' in chunk ? chunk.give : 0, at);
      if (moved.gainedMinor >= stillNeeded) return 'given';
      // This member moved (a take for another of its requests landed), or siblings moved as
      // they were asked: the family's money is moving, so the caller writes again rather than
      // refuse (fails before: 3–6 of 20 concurrent events of 10 members refused while their
      // siblings held 2,150 idle; review). Only while the family, as read, can pay: siblings
      // spending what it cannot would otherwise be waited on to the end of the tries.
      if (moved.contended && moved.spareMinor + main.available >= stillNeeded) return 'moved';
      current = moved.member;
      stillNeeded -= moved.gainedMinor;
      main = await getAccountItem(store, main.accountId);
      continue;
    }
    if ('refuse' in decision) return current === member ? decision.refuse : 'moved';
    // Sized without the main account's figures (the first try), a chunk is taken only if it
    // is at most half of what is left (allotmentFor's fair share), else the refusal sizes it.
    const result = await transfer(store, { to: current.accountId, member: current, amountMinor: decision.give, at, direction: 'take', leaveMinor: main === undefined ? decision.give : 0 });
    if (typeof result === 'string') return result;
    main = result.main;
  }
  return current === member ? 'insufficient' : 'moved';
}

/** What reclaimAllotments and takeFromSiblings read of each member (not its `ops`, which may be large). */
const MEMBER_MONEY = ['pk', 'sk', 'accountId', 'mainAccountId', 'balance', 'reserved', 'takenMinor', 'allotSeq', 'allotStreak', 'allottedAt', 'ownMoney'] as const;

/** The members of `mainAccountId` but `exceptMemberId` with money to give back, largest first. */
async function membersWithSpare(store: Store, mainAccountId: string, exceptMemberId?: string): Promise<Array<{ member: AccountItem; spare: number }>> {
  const ids = (await listMembers(store, mainAccountId)).filter((id) => id !== exceptMemberId);
  if (ids.length === 0) return [];
  const read = (await batchGetAll(store, ids.map((id) => key.account(id)), true, undefined, MEMBER_MONEY)) as AccountItem[];
  return read
    .filter((m) => m.mainAccountId === mainAccountId)
    .map((member) => ({ member, spare: reclaimable(member) }))
    .filter((m) => m.spare > 0)
    .sort((a, b) => b.spare - a.spare);
}

/**
 * A member short while its main account is dry takes its siblings' idle allotments straight
 * from them (a lateral allotment): each move is one transaction of the two members' items
 * and a ledger entry on each, guarded by both allotSeqs; the main account's item is not
 * written, and its `allottedOut` (what its members have taken, together) does not change.
 * From each sibling, at least what is still short, and up to half of what it holds idle
 * (the fair share of allotmentFor), within this member's chunk and consumption limit.
 * Returns what came, the member as it is after it, whether this member or a sibling moved
 * under a move (`contended`), and what the siblings held to give as read (`spareMinor`;
 * unbounded when this member moved: it may hold what it needs now).
 */
async function takeFromSiblings(store: Store, member: AccountItem, mainAccountId: string, shortMinor: number, chunkMinor: number, at: string):
  Promise<{ gainedMinor: number; member: AccountItem; contended: boolean; spareMinor: number }> {
  const room = roomUnderLimit(member.consumptionLimit, member.takenMinor ?? 0);
  const wanted = Math.min(Math.max(shortMinor, chunkMinor), room);
  let current = member;
  let gainedMinor = 0;
  let contended = false;
  const candidates = await membersWithSpare(store, mainAccountId, member.accountId);
  const spareMinor = candidates.reduce((sum, m) => sum + m.spare, 0);
  for (const candidate of candidates) {
    // A sibling that moved as it was asked (it charged, or another member took from it) is
    // read again and asked once more.
    for (let sibling: AccountItem | null = candidate.member, asked = 0; sibling && asked < 2 && gainedMinor < wanted; asked++) {
      const spare = reclaimable(sibling);
      const amountMinor = Math.min(spare, wanted - gainedMinor, Math.max(shortMinor - gainedMinor, Math.floor(spare / 2)));
      if (amountMinor <= 0) break;
      const moved = await lateral(store, current, sibling, amountMinor, at);
      // This member moved (money came for another of its requests): its caller looks again.
      if (moved === 'member') return { gainedMinor, member: current, contended: true, spareMinor: Number.MAX_SAFE_INTEGER };
      if (moved === 'sibling') {
        contended = true;
        sibling = await getAccountItem(store, sibling.accountId);
        if (sibling?.mainAccountId !== mainAccountId) break;
        continue;
      }
      gainedMinor += amountMinor;
      current = { ...current, balance: current.balance + amountMinor, available: current.available + amountMinor, takenMinor: (current.takenMinor ?? 0) + amountMinor, allotSeq: (current.allotSeq ?? 0) + 1, allotStreak: (current.allotStreak ?? 0) + 1 };
      break;
    }
    if (gainedMinor >= wanted) break;
  }
  return { gainedMinor, member: current, contended, spareMinor };
}

async function lateral(store: Store, member: AccountItem, sibling: AccountItem, x: number, at: string): Promise<'given' | 'member' | 'sibling'> {
  const seq = member.allotSeq ?? 0;
  const siblingSeq = sibling.allotSeq ?? 0;
  const mainId = member.mainAccountId!;
  const firstLookAt = new Date(Date.parse(at) + ORPHAN_GRACE_MS).toISOString();
  const guard = (n: number) => (n === 0 ? 'attribute_not_exists(allotSeq)' : 'allotSeq = :seq');
  const memberEntry = `allot:${member.accountId}:${seq + 1}:member`;
  const siblingEntry = `allot:${sibling.accountId}:${siblingSeq + 1}:member`;
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Update: {
          TableName: store.tableName, Key: key.account(sibling.accountId),
          // As a give-back (transfer 'return'): only money the sibling holds and no session holds.
          UpdateExpression: 'SET balance = balance - :x, available = available - :x, takenMinor = takenMinor - :x, allotSeq = :next, allotStreak = :zero',
          ConditionExpression: `${guard(siblingSeq)} AND mainAccountId = :main AND balance >= :xr AND reserved <= :r`,
          ExpressionAttributeValues: { ':x': x, ':zero': 0, ':next': siblingSeq + 1, ...(siblingSeq === 0 ? {} : { ':seq': siblingSeq }), ':main': mainId, ':xr': x + sibling.reserved, ':r': sibling.reserved },
        } },
        { Update: {
          TableName: store.tableName, Key: key.account(member.accountId),
          UpdateExpression: 'SET balance = balance + :x, available = available + :x, takenMinor = if_not_exists(takenMinor, :zero) + :x, allotSeq = :next, allotStreak = :streak, allottedAt = :at, dueShard = :shard, dueAt = if_not_exists(dueAt, :look)',
          ConditionExpression: `${guard(seq)} AND mainAccountId = :main`,
          ExpressionAttributeValues: {
            ':x': x, ':zero': 0, ':next': seq + 1, ...(seq === 0 ? {} : { ':seq': seq }), ':main': mainId, ':streak': (member.allotStreak ?? 0) + 1,
            ':at': at, ':shard': dueShardOf(member.accountId), ':look': firstLookAt,
          },
        } },
        ledgerPut(store, { accountId: sibling.accountId, entryId: siblingEntry, at, type: 'allotment', amount: -x, reservedDelta: 0, counterparty: member.accountId, pairEntryId: memberEntry }),
        ledgerPut(store, { accountId: member.accountId, entryId: memberEntry, at, type: 'allotment', amount: x, reservedDelta: 0, counterparty: sibling.accountId, pairEntryId: siblingEntry }),
      ],
    })));
  } catch (error) {
    if (conditionFailedAt(error, 1)) return 'member';
    if (conditionFailedAt(error, 0)) return 'sibling';
    throw error;
  }
  return 'given';
}

/** At most this many members give back at once (see reclaimAllotments). */
const RECLAIM_CONCURRENCY = 10;

/**
 * What of a member's money its main account may bring back: what the main account's view
 * counts as its own (heldFromMain: nothing of a member that was ever topped up, whose money
 * is not told apart) and no session holds, within what the member holds unreserved.
 */
function reclaimable(member: AccountItem): number {
  const held = heldFromMain(member);
  return Math.max(0, Math.min(held.heldMinor - held.reservedMinor, unreservedMoney(member)));
}

/**
 * Brings back up to `wantedMinor` of the allotments that `mainAccountId`'s members hold and no
 * session holds, so that the main account's own charge is not refused while the family has
 * the money: its view counts those chunks as its money (accountView `heldByMembers`), and
 * the sweep returns them only after IDLE_RETURN_SECONDS. Largest first (fewest writes). Only
 * on a shortfall, never on the hot path. A member that moved meanwhile (its allotSeq guard)
 * is read again and asked once more; often it moved because a concurrent charge brought the
 * chunk back already, so the caller writes again whatever this returns. Returns what came back,
 * whether a member moved under a give-back (`contended`: concurrent charges of the main
 * account bring back chunks for one another, so one that brought nothing may still pass),
 * and what the members held to give back as read (`spareMinor`).
 */
export async function reclaimAllotments(store: Store, mainAccountId: string, wantedMinor: number): Promise<{ backMinor: number; contended: boolean; spareMinor: number }> {
  if (wantedMinor <= 0) return { backMinor: 0, contended: false, spareMinor: 0 };
  const members = await membersWithSpare(store, mainAccountId);
  const spareMinor = members.reduce((sum, m) => sum + m.spare, 0);
  let left = wantedMinor;
  const chosen: Array<{ member: AccountItem; amountMinor: number }> = [];
  for (const { member, spare } of members) {
    if (left <= 0) break;
    const amountMinor = Math.min(spare, left);
    chosen.push({ member, amountMinor });
    left -= amountMinor;
  }
  let contended = false;
  const giveBack = async ({ member, amountMinor }: { member: AccountItem; amountMinor: number }): Promise<number> => {
    if ((await returnAllotment(store, member, amountMinor)) === 'given') return amountMinor;
    contended = true;
    const now = await getAccountItem(store, member.accountId);
    if (now?.mainAccountId !== mainAccountId) return 0;
    const again = Math.min(amountMinor, reclaimable(now));
    return again > 0 && (await returnAllotment(store, now, again)) === 'given' ? again : 0;
  };
  let back = 0;
  for (let i = 0; i < chosen.length; i += RECLAIM_CONCURRENCY) {
    back += (await Promise.all(chosen.slice(i, i + RECLAIM_CONCURRENCY).map(giveBack))).reduce((sum, x) => sum + x, 0);
  }
  return { backMinor: back, contended, spareMinor };
}

/** Gives back `amountMinor` of a member's unspent allotment to its main account. */
export async function returnAllotment(store: Store, member: AccountItem, amountMinor: number): Promise<'given' | 'moved'> {
  if (amountMinor <= 0) return 'given';
  const result = await transfer(store, { to: member.mainAccountId!, member, amountMinor, at: store.now().toISOString(), direction: 'return' });
  return typeof result === 'string' ? result : 'moved';
}

/** `leaveMinor`: a take needs the main account to keep at least this much after it. */
async function transfer(store: Store, t: { to: string; member: AccountItem; amountMinor: number; at: string; direction: 'take' | 'return'; leaveMinor?: number }):
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
  // `:x` is what the main account must hold: the chunk and what a first try leaves it (no
  // main account holds 2^53-1, so a sum past it is capped, not sent: the SDK refuses such a
  // number, and a huge request's first try was a 500; review).
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
          ExpressionAttributeValues: { ':dx': sign * x, ':zero': 0, ...(t.direction === 'take' ? { ':x': Math.min(x + (t.leaveMinor ?? 0), Number.MAX_SAFE_INTEGER), ':active': 'active', ':now': t.at } : {}) },
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
  // A take is the main account's money spent by a member: it may cross the main account's
  // lowBalanceThreshold, as a charge of its own would (fails before: a main account whose
  // members did the spending was never told; review). One read per take, only when a member's
  // money runs out; it never fails what it follows.
  if (t.direction === 'take') await lowBalanceAfter(store, mainId, x, 'an allotment');
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

/**
 * A member's hold went back (a release, a debit that used less, an expiry, an update that
 * holds less, a game's end) or a charge came back (a refund) while it is past a lowered
 * consumptionLimit: what it holds beyond the limit and no session holds goes back to the main
 * account now, as the PATCH that lowered it gave back what was free then (fails before: it
 * stayed the member's to spend, 400 consumed under a limit of 100; review 20 of stop 28).
 * Only for a member whose money is all its main account's: one that was ever topped up or
 * sponsored (`ownMoney`) holds money of its own too, which its item does not tell apart
 * (fails before, when it did: its top-up went to the main account; reviews 25 and 26).
 */
export async function giveBackPastLimit(store: Store, member: AccountItem): Promise<void> {
  let current: AccountItem | null = member;
  for (let attempt = 0; attempt < 4 && current?.mainAccountId && current.consumptionLimit !== undefined && !current.ownMoney; attempt++) {
    const back = excessOverLimit(current.takenMinor ?? 0, current.consumptionLimit, unreservedMoney(current));
    if (back <= 0 || (await returnAllotment(store, current, back)) === 'given') return;
    current = await getAccountItem(store, member.accountId); // it moved under the give-back
  }
}

/** A give-back after a write that stands must not fail its request: the sweep's idle give-back is the backstop. */
export const logGiveBackFailure = (accountId: string) => (error: unknown) => {
  console.error(JSON.stringify({ level: 'ERROR', message: 'could not give back an allotment past the consumption limit', accountId, error: String(error) }));
};

/** giveBackPastLimit for an account known by id only (a refund's, a game party's): one read. */
export async function giveBackPastLimitOf(store: Store, accountId: string): Promise<void> {
  const account = await getAccountItem(store, accountId);
  if (account) await giveBackPastLimit(store, account);
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
