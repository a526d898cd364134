// Allotments between an attached account and its main account (seeds 002 and 003). Moving
// money between the two items is one transaction (main update + member update + a ledger
// entry on each): all or nothing, and rare by design, one per chunk. The member's
// `allotSeq` makes concurrent takes by one member fetch once; the main account's
// `available >= :x` condition means members together can never take more than it has.
import { TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { createHash } from 'node:crypto';
import { DUE_SHARDS, key } from './table.js';
import { cancellationReasons, withConflictRetry, type Store } from './db.js';
import { ledgerPut } from './ledger.js';
import { getAccountItem, type AccountItem } from './accounts.js';
import { plainItem } from './db.js';
import { allotmentFor, excessOverLimit } from '../domain/allotment.js';

export type TakeResult = 'given' | 'moved' | 'insufficient' | 'limit' | 'inactive';

/** An allotment left unused this long goes back to the main account (by the sweep). */
export const IDLE_RETURN_SECONDS = 600;

const shardOf = (accountId: string) => `due#${createHash('sha256').update(accountId).digest()[0]! % DUE_SHARDS}`;

function mainIsUsable(main: AccountItem | null, at: string): main is AccountItem {
  return !!main && main.status === 'active' && (main.validUntil === undefined || main.validUntil > at);
}

/** Moves money from the main account to `member` so it can cover `neededMinor` more. */
export async function takeAllotment(store: Store, member: AccountItem, neededMinor: number): Promise<TakeResult> {
  // First try without reading the main account; a refusal hands back its item (ALL_OLD),
  // which sizes the next try. The main account's item sees one write per chunk.
  let main: AccountItem | null | undefined;
  for (let attempt = 0; attempt < 4; attempt++) {
    const at = store.now().toISOString();
    if (main !== undefined && !mainIsUsable(main, at)) return 'inactive';
    const decision = allotmentFor({
      neededMinor, mainAvailableMinor: main?.available, consumptionLimitMinor: member.consumptionLimit, takenMinor: member.takenMinor ?? 0,
      streak: member.allotStreak ?? 0,
    });
    if ('refuse' in decision) return decision.refuse;
    const result = await transfer(store, { to: member.accountId, member, amountMinor: decision.give, at, direction: 'take' });
    if (typeof result === 'string') return result;
    main = result.main;
  }
  return 'insufficient';
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
  const idleAt = new Date(Date.parse(t.at) + IDLE_RETURN_SECONDS * 1000).toISOString();
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Update: {
          TableName: store.tableName, Key: key.account(mainId),
          UpdateExpression: 'SET balance = balance - :dx, available = available - :dx, allottedOut = if_not_exists(allottedOut, :zero) + :dx',
          ConditionExpression: t.direction === 'take'
            ? 'attribute_exists(pk) AND #status = :active AND (attribute_not_exists(validUntil) OR validUntil > :at) AND available >= :x'
            : 'attribute_exists(pk)',
          ExpressionAttributeNames: t.direction === 'take' ? { '#status': 'status' } : undefined,
          ExpressionAttributeValues: { ':dx': sign * x, ':zero': 0, ...(t.direction === 'take' ? { ':x': x, ':active': 'active', ':at': t.at } : {}) },
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        } },
        { Update: {
          TableName: store.tableName, Key: key.account(t.member.accountId),
          // allotSeq guards the member (so `allotStreak` is read and written under the same guard).
          UpdateExpression: `SET balance = balance + :dx, available = available + :dx, takenMinor = if_not_exists(takenMinor, :zero) + :dx, allotSeq = :next, allotStreak = :streak${t.direction === 'take' ? ', dueShard = :shard, dueAt = :idle' : ''}`,
          ConditionExpression: `${seq === 0 ? 'attribute_not_exists(allotSeq)' : 'allotSeq = :seq'}${t.direction === 'return' ? ' AND available >= :x' : ''}`,
          ExpressionAttributeValues: {
            ':dx': sign * x, ':zero': 0, ':next': seq + 1, ...(seq === 0 ? {} : { ':seq': seq }),
            ':streak': t.direction === 'take' ? (t.member.allotStreak ?? 0) + 1 : 0,
            ...(t.direction === 'take' ? { ':shard': shardOf(t.member.accountId), ':idle': idleAt } : { ':x': x }),
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
  await store.db.send(new UpdateCommand({
    TableName: store.tableName, Key: key.account(accountId),
    UpdateExpression: limitMinor === null ? 'REMOVE consumptionLimit' : 'SET consumptionLimit = :l',
    ConditionExpression: 'attribute_exists(mainAccountId)',
    ...(limitMinor === null ? {} : { ExpressionAttributeValues: { ':l': limitMinor } }),
  }));
  if (limitMinor === null) return;
  for (let attempt = 0; attempt < 4; attempt++) {
    const member = (await getAccountItem(store, accountId))!;
    const back = excessOverLimit(member.takenMinor ?? 0, limitMinor, member.available);
    if ((await returnAllotment(store, member, back)) === 'given') return;
  }
}

/** The sweep: an allotment unused for a while goes back to the main account for others. */
export async function returnIdleAllotment(store: Store, accountId: string): Promise<'returned' | 'busy' | 'gone'> {
  const member = await getAccountItem(store, accountId);
  if (!member?.mainAccountId) return 'gone';
  const clear = () => store.db.send(new UpdateCommand({
    TableName: store.tableName, Key: key.account(accountId),
    UpdateExpression: 'REMOVE dueShard, dueAt', ConditionExpression: 'allotSeq = :seq',
    ExpressionAttributeValues: { ':seq': member.allotSeq ?? 0 },
  })).catch((error) => { if ((error as Error).name !== 'ConditionalCheckFailedException') throw error; });
  if (member.reserved > 0) {
    // Sessions are running on it: look again later.
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId), UpdateExpression: 'SET dueAt = :idle',
      ExpressionAttributeValues: { ':idle': new Date(store.now().getTime() + IDLE_RETURN_SECONDS * 1000).toISOString() },
    }));
    return 'busy';
  }
  const back = Math.min(member.available, member.takenMinor ?? 0);
  if (back > 0 && (await returnAllotment(store, member, back)) !== 'given') return 'busy';
  await clear();
  return back > 0 ? 'returned' : 'gone';
}
