// The one write that moves money on an account during a session: a single conditional
// UpdateItem that changes balance/reserved/available and records the session's step in
// `ops.<sessionId>`. The condition on that entry's `seq` is what makes the step exactly
// once: a retry of an applied step fails the condition and finds its own step recorded.
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import { key } from './table.js';
import { isConditionFailure, withConflictRetry, type Store } from './db.js';
import type { AccountItem, OpEntry } from './accounts.js';
import type { Movement } from '../domain/session.js';
import { BACKSTOP_THRESHOLD, compactAccount, finishedCount, pendingRemovals, removed } from './compaction.js';

export type OpCondition =
  /** A new operation: nothing recorded under this id yet; the account must be usable. */
  | { kind: 'new' }
  /** The next step of a live session: its recorded step must be `seq` and not finished. */
  | { kind: 'step'; seq: number };

export type OpResult =
  | { ok: true; account: AccountItem }
  /** `main`: why the main account of an attached account could not cover the shortfall. */
  | { ok: false; account: AccountItem | null; main?: 'insufficient' | 'limit' | 'inactive' };

/** DynamoDB returns the old item of a failed condition as raw attribute values. */
export function plainItem(item: Record<string, any> | undefined): Record<string, any> | undefined {
  if (!item) return undefined;
  const looksRaw = Object.values(item).every((v) => v && typeof v === 'object' && Object.keys(v).length === 1 && /^(S|N|M|L|BOOL|NULL|SS|NS|B|BS)$/.test(Object.keys(v)[0]!));
  return looksRaw ? unmarshall(item as any) : item;
}

export async function applyOp(store: Store, accountId: string, opId: string, condition: OpCondition, movement: Movement, entry: OpEntry, depth = 0): Promise<OpResult> {
  const need = -movement.availableDelta;
  const names: Record<string, string> = { '#op': opId };
  const values: Record<string, unknown> = {
    ':db': movement.balanceDelta,
    ':dr': movement.reservedDelta,
    ':da': movement.availableDelta,
    ':entry': entry,
  };
  const conditions = ['attribute_exists(pk)'];
  if (need > 0) {
    conditions.push('available >= :need');
    values[':need'] = need;
  }
  if (condition.kind === 'new') {
    conditions.push('attribute_not_exists(ops.#op)', '#status = :active', '(attribute_not_exists(validUntil) OR validUntil > :now)');
    names['#status'] = 'status';
    values[':active'] = 'active';
    values[':now'] = store.now().toISOString();
  } else {
    conditions.push('ops.#op.seq = :seq', 'attribute_not_exists(ops.#op.done)');
    values[':seq'] = condition.seq;
  }
  // Entries of finished operations this process has fully recorded go with this write.
  const removals = pendingRemovals(store, accountId, opId);
  removals.forEach((removal, i) => { names[`#f${i}`] = removal; });
  const removeClause = removals.length ? ` REMOVE ${removals.map((_, i) => `ops.#f${i}`).join(', ')}` : '';
  try {
    const result = await withConflictRetry(() => store.db.send(new UpdateCommand({
      TableName: store.tableName,
      Key: key.account(accountId),
      UpdateExpression: `SET balance = balance + :db, reserved = reserved + :dr, available = available + :da, ops.#op = :entry${removeClause}`,
      ConditionExpression: conditions.join(' AND '),
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
      ReturnValues: 'ALL_NEW',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    })));
    removed(store, accountId, removals);
    const account = result.Attributes as AccountItem;
    if (finishedCount(account) > BACKSTOP_THRESHOLD) await compactAccount(store, account);
    return { ok: true, account };
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    const account = (plainItem(error.Item) as AccountItem | undefined) ?? null;
    // An attached account short of money takes an allotment from its main account, once.
    if (account?.mainAccountId && depth === 0 && onlyMoneyShort(account, opId, condition, need, store.now())) {
      const { takeAllotment } = await import('./allotments.js');
      const taken = await takeAllotment(store, account, need - account.available);
      if (taken === 'given' || taken === 'moved') return applyOp(store, accountId, opId, condition, movement, entry, depth + 1);
      return { ok: false, account, main: taken };
    }
    return { ok: false, account };
  }
}

/** The write failed only because `available` was below `need`. */
function onlyMoneyShort(account: AccountItem, opId: string, condition: OpCondition, need: number, now: Date): boolean {
  if (account.available >= need) return false;
  const recorded = account.ops?.[opId];
  if (condition.kind === 'new') return !recorded && refusalOf(account, opId, now) === 'insufficient';
  return recorded?.seq === condition.seq && !recorded.done;
}

/** Why a new operation was refused, in the order a caller should hear it. */
export function refusalOf(account: AccountItem | null, opId: string, now: Date):
  'not_found' | 'exists' | 'account_inactive' | 'insufficient' {
  if (!account) return 'not_found';
  if (account.ops?.[opId]) return 'exists';
  if (account.status !== 'active' || (account.validUntil !== undefined && account.validUntil <= now.toISOString())) return 'account_inactive';
  return 'insufficient';
}
