// One-shot event charges (CCR-Event): debit directly, no reservation. Same commit point as
// a session step: the account write records `ops.evt:<requestId>`, so a retry that finds
// it finishes the request record instead of charging again.
import { GetCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { key } from './table.js';
import { cancellationReasons, withConflictRetry, type Store } from './db.js';
import { applyOp, refusalOf } from './ops.js';
import { ledgerPut } from './ledger.js';
import { markFinalized } from './compaction.js';
import { getService } from './services.js';
import type { OpEntry, StoredAnswer } from './accounts.js';
import { fail } from '../domain/errors.js';
import { priceOf } from '../domain/rating.js';

export interface DirectDebitCommand {
  requestId: string;
  accountId: string;
  clientId: string;
  serviceId: string;
  units?: number;
  amount?: number;
  /** The AS of seed 001: an event that belongs to a call's multi-session. */
  multiSessionId?: string;
}

async function storedAnswer(store: Store, requestId: string, bodyHash: string): Promise<StoredAnswer | null> {
  const result = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.request(requestId), ConsistentRead: true }));
  if (!result.Item) return null;
  if (result.Item.h !== bodyHash) fail('idempotency_conflict', `requestId ${requestId} was used with another body`);
  return result.Item.answer as StoredAnswer;
}

export async function directDebit(store: Store, command: DirectDebitCommand, bodyHash: string): Promise<StoredAnswer> {
  const service = await getService(store, command.serviceId);
  const units = command.units ?? (service.unit === 'money' ? command.amount! : undefined);
  if (units === undefined) fail('validation_failed', `service ${command.serviceId} is rated in ${service.unit}: give units`);
  const amountMinor = priceOf(units!, service.price);
  const opId = `evt:${command.requestId}`;
  const now = store.now();
  let entry: OpEntry = {
    seq: 1, amt: 0, gu: 0, u: units!, chg: amountMinor, rid: command.requestId, h: bodyHash, at: now.toISOString(), done: 'charged',
    ...(command.multiSessionId ? { ms: command.multiSessionId, svc: command.serviceId, cl: command.clientId } : {}),
  };
  const result = await applyOp(store, command.accountId, opId, { kind: 'new' },
    { balanceDelta: -amountMinor, reservedDelta: 0, availableDelta: -amountMinor }, entry);
  if (!result.ok) {
    const refusal = refusalOf(result.account, opId, now);
    if (refusal === 'exists') {
      const recorded = result.account!.ops[opId]!;
      if (recorded.h !== bodyHash) fail('idempotency_conflict', `requestId ${command.requestId} was used with another body`);
      entry = recorded;
    } else {
      const replay = await storedAnswer(store, command.requestId, bodyHash);
      if (replay) return replay;
      if (refusal === 'not_found') fail('not_found', `account ${command.accountId} does not exist`);
      if (refusal === 'account_inactive') fail('account_inactive', `account ${command.accountId} is suspended or expired`);
      if (result.main === 'inactive') fail('account_inactive', `the main account of ${command.accountId} fails authorization`);
      fail('insufficient_credit', `account ${command.accountId} cannot pay ${amountMinor}`, { finalUnitAction: 'terminate' });
    }
  }
  const answer = answerOf(command.accountId, entry);
  try {
    await recordDirectDebit(store, command.accountId, entry, true);
  } catch (error) {
    if (!cancellationReasons(error)) throw error;
    // The request record exists. Unless it records this very debit (a concurrent duplicate
    // that recorded it first), the debit just taken is a second one: give it back. That is
    // the case of a replay after the first debit's entry left the account, and of a
    // requestId that belongs to another request.
    const record = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.request(command.requestId), ConsistentRead: true }));
    if (record.Item?.at !== entry.at) await giveBack(store, command.accountId, entry);
    const replay = await storedAnswer(store, command.requestId, bodyHash);
    if (replay) return replay;
    throw error;
  }
  return answer;
}

const answerOf = (accountId: string, entry: OpEntry): StoredAnswer =>
  ({ status: 201, body: { charged: { units: entry.u, amount: entry.chg }, chargedAccountId: accountId } });

/**
 * Writes the request record and ledger entry of a debit the account already applied.
 * `strict`: fail when the record exists (the caller tells a replay from a conflict);
 * otherwise an existing record means there is nothing left to do.
 */
/** Undoes a debit recorded only on the account (its entry still there, unchanged). */
async function giveBack(store: Store, accountId: string, entry: OpEntry): Promise<void> {
  const opId = `evt:${entry.rid}`;
  await store.db.send(new UpdateCommand({
    TableName: store.tableName, Key: key.account(accountId),
    UpdateExpression: 'SET balance = balance + :a, available = available + :a REMOVE ops.#op',
    ConditionExpression: 'ops.#op.h = :h AND ops.#op.#at = :at',
    ExpressionAttributeNames: { '#op': opId, '#at': 'at' }, ExpressionAttributeValues: { ':a': entry.chg, ':h': entry.h, ':at': entry.at },
  })).catch((error) => { if ((error as Error).name !== 'ConditionalCheckFailedException') throw error; });
}

export async function recordDirectDebit(store: Store, accountId: string, entry: OpEntry, strict = false): Promise<void> {
  try {
    await withConflictRetry(() => store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Put: {
          TableName: store.tableName,
          Item: { ...key.request(entry.rid), requestId: entry.rid, h: entry.h, kind: 'debit', accountId, at: entry.at, answer: answerOf(accountId, entry) },
          ConditionExpression: 'attribute_not_exists(pk)',
        } },
        ledgerPut(store, { accountId, entryId: `evt:${entry.rid}`, at: entry.at, type: 'charge', amount: -entry.chg, reservedDelta: 0, units: entry.u, requestId: entry.rid }),
        ...(entry.ms ? [{ Put: {
          TableName: store.tableName,
          Item: { ...key.multiSessionEvent(entry.ms, entry.rid), requestId: entry.rid, serviceId: entry.svc, clientId: entry.cl, accountId, charged: { units: entry.u, amount: entry.chg }, at: entry.at },
        } }] : []),
      ],
    })));
  } catch (error) {
    if (strict || !cancellationReasons(error)) throw error;
    // Recorded before: by this debit, or by an earlier one this entry duplicates.
    const record = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.request(entry.rid), ConsistentRead: true }));
    if (record.Item?.at !== entry.at) return giveBack(store, accountId, entry);
  }
  markFinalized(store, accountId, `evt:${entry.rid}`, entry.seq);
}
