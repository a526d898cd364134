// The one write that moves money on an account during a session: a single conditional
// UpdateItem that changes balance/reserved/available and records the session's step in
// `ops.<sessionId>`. The condition on that entry's `seq` is what makes the step exactly
// once: a retry of an applied step fails the condition and finds its own step recorded.
import { randomBytes } from 'node:crypto';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { dueShardOf, key } from './table.js';
import { isConditionFailure, plainItem, withConflictRetry, type Store } from './db.js';
// Re-exported: callers import it from here.
export { plainItem } from './db.js';
import type { AccountItem, OpEntry } from './accounts.js';
import type { Movement } from '../domain/session.js';
import { BACKSTOP_THRESHOLD, claimRemovals, compactAccount, finishedCount, settleRemovals } from './compaction.js';
import { takeAllotment } from './allotments.js';
import { takeFromSponsors, type SponsoredAccount } from './sponsors.js';
import { afterCharge, serviceAccountId } from './serviceAccounts.js';

/**
 * A random tag for an ops entry (`n`). Entries under one id are told apart by it, never by
 * their `at`: two attempts within one clock millisecond share an `at`.
 */
export const newNonce = (): string => randomBytes(6).toString('base64url');

export type OpCondition =
  /**
   * A new operation: nothing recorded under this id yet; the account must be usable.
   * `dueAt`: when the sweep should look at the account should the operation never be
   * finished (its handler dying after this write, and no retry coming).
   */
  | {
    kind: 'new'; dueAt: string;
    /**
     * The service the operation is for: when the account keeps a service account for it
     * (seed 004) the write is refused and the result names that account (`route`). Checked
     * by the write's own condition, so routing costs nothing to accounts without one.
     */
    serviceId?: string;
  }
  /** The next step of a live session: its recorded step must be `seq` and not finished. */
  | { kind: 'step'; seq: number };

export type OpResult =
  | { ok: true; account: AccountItem }
  /** `main`: why the main account of an attached account could not cover the shortfall. */
  | {
    ok: false; account: AccountItem | null; main?: 'insufficient' | 'limit' | 'inactive';
    /** The service account item to charge instead (see OpCondition `serviceId`). */
    route?: string;
  };

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
  const sets = ['balance = balance + :db', 'reserved = reserved + :dr', 'available = available + :da', 'ops.#op = :entry'];
  if (need > 0) {
    conditions.push('available >= :need');
    values[':need'] = need;
  }
  if (condition.kind === 'new') {
    conditions.push('attribute_not_exists(ops.#op)', '#status = :active', '(attribute_not_exists(validUntil) OR validUntil > :now)');
    names['#status'] = 'status';
    values[':active'] = 'active';
    values[':now'] = store.now().toISOString();
    // Into the due index, unless the account is there already: then nothing changes in the
    // index, so the hot path pays no index write (the sweep moves the mark, see compaction.ts).
    sets.push('dueShard = if_not_exists(dueShard, :shard)', 'dueAt = if_not_exists(dueAt, :due)');
    values[':shard'] = dueShardOf(accountId);
    values[':due'] = condition.dueAt;
    if (condition.serviceId) {
      conditions.push('attribute_not_exists(serviceAccounts.#svc)');
      names['#svc'] = condition.serviceId;
    }
  } else {
    conditions.push('ops.#op.seq = :seq', 'attribute_not_exists(ops.#op.done)');
    values[':seq'] = condition.seq;
  }
  // Entries of finished operations this process has fully recorded go with this write, each
  // only if it is still that very entry (its nonce): one removed already and created anew
  // under the same id (a late duplicate) must stay.
  const removals = claimRemovals(store, accountId, opId);
  removals.forEach((removal, i) => {
    names[`#f${i}`] = removal.opId;
    values[`:f${i}`] = removal.n;
    conditions.push(`ops.#f${i}.n = :f${i}`);
  });
  const removeClause = removals.length ? ` REMOVE ${removals.map((_, i) => `ops.#f${i}`).join(', ')}` : '';
  let result;
  try {
    result = await withConflictRetry(() => store.db.send(new UpdateCommand({
      TableName: store.tableName,
      Key: key.account(accountId),
      UpdateExpression: `SET ${sets.join(', ')}${removeClause}`,
      ConditionExpression: conditions.join(' AND '),
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
      ReturnValues: 'ALL_NEW',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    })));
  } catch (error) {
    if (!isConditionFailure(error)) {
      settleRemovals(store, accountId, removals, 'unknown');
      throw error;
    }
    const account = (plainItem(error.Item) as AccountItem | undefined) ?? null;
    // A removal whose entry is gone or replaced fails the whole write: drop it, write again
    // (one more call, only when a removal was stale).
    const stale = removals.filter((removal) => account?.ops?.[removal.opId]?.n !== removal.n);
    settleRemovals(store, accountId, removals.filter((removal) => !stale.includes(removal)), 'refused');
    if (stale.length) return applyOp(store, accountId, opId, condition, movement, entry, depth);
    if (condition.kind === 'new' && condition.serviceId && account && Object.hasOwn(account.serviceAccounts ?? {}, condition.serviceId)) {
      return { ok: false, account, route: serviceAccountId(accountId, condition.serviceId) };
    }
    // An attached account short of money takes an allotment from its main account, once.
    if (account?.mainAccountId && depth === 0 && onlyMoneyShort(account, opId, condition, need, store.now())) {
      const taken = await takeAllotment(store, account, need - account.available);
      if (taken === 'given' || taken === 'moved') return applyOp(store, accountId, opId, condition, movement, entry, depth + 1);
      return { ok: false, account, main: taken };
    }
    // An account with sponsors (seed 003) asks them for the shortfall, once.
    if ((account as SponsoredAccount | null)?.sponsors?.length && !account!.mainAccountId && depth === 0 && onlyMoneyShort(account!, opId, condition, need, store.now())) {
      const taken = await takeFromSponsors(store, account as SponsoredAccount, need - account!.available);
      if (taken === 'given' || taken === 'moved') return applyOp(store, accountId, opId, condition, movement, entry, depth + 1);
    }
    return { ok: false, account };
  }
  settleRemovals(store, accountId, removals, 'applied');
  const account = result.Attributes as AccountItem;
  if (finishedCount(account) > BACKSTOP_THRESHOLD) await compactAccount(store, account);
  // Below a minimum level: a threshold recharge and a notification (no call otherwise). The
  // charge stands whatever happens here: a retry would find it applied and not cross again,
  // so failing the request would lose the recharge as surely as logging does.
  await afterCharge(store, account, movement).catch((error) => {
    console.error(JSON.stringify({ level: 'ERROR', message: 'threshold recharge not recorded', accountId, error: String(error) }));
  });
  return { ok: true, account };
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
