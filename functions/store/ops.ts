// The one write that moves money on an account during a session: a single conditional
// UpdateItem that changes balance/reserved/available and records the session's step in
// `ops.<sessionId>`. The condition on that entry's `seq` is what makes the step exactly
// once: a retry of an applied step fails the condition and finds its own step recorded.
import { randomBytes } from 'node:crypto';
import { TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { dueShardOf, key } from './table.js';
import { cancellationReasons, isConditionFailure, plainItem, withConflictRetry, type Store } from './db.js';
// Re-exported: callers import it from here.
export { plainItem } from './db.js';
import { getAccountItem, USABLE_CONDITION, usableAt, type AccountItem, type OpEntry } from './accounts.js';
import { giveBackPastLimit, logGiveBackFailure } from './allotments.js';
import type { Movement } from '../domain/session.js';
import { fail } from '../domain/errors.js';
import { askSweepSoon, BACKSTOP_THRESHOLD, claimRemovals, finishedCount, maxOpsOf, settleRemovals, type Removal } from './compaction.js';
import { coverShortfall, hasCover, MAX_COVER_TRIES } from './cover.js';
import { afterCharge, isServiceAccountId, serviceAccountId } from './serviceAccounts.js';

/**
 * A random tag for an ops entry (`n`). Entries under one id are told apart by it, never by
 * their `at`: two attempts within one clock millisecond share an `at`.
 */
export const newNonce = (): string => randomBytes(6).toString('base64url');

// Re-exported: callers import them from here (see compaction.ts).
export { MAX_RECORDED_OPS, maxOpsOf } from './compaction.js';
/**
 * The condition of a new operation's write that keeps `ops` under MAX_RECORDED_OPS
 * (`:maxOps`: that, plus the finished entries the write removes as it lands).
 */
export const ROOM_CONDITION = '(attribute_not_exists(ops) OR size(ops) < :maxOps)';
/** The refusal of a new operation on a full account; not kept: a close, or the sweep's removal of finished ones, makes room. */
export const tooManyOps = (store: Store, shown: string): never =>
  fail('conflict', `${shown} has ${maxOpsOf(store)} operations open or awaiting cleanup: close some, or retry in a few minutes`);
/** Whether `account` records as many operations as it may (opId's own entry aside). */
export const opsFull = (store: Store, account: AccountItem, opId: string) => !account.ops?.[opId] && Object.keys(account.ops ?? {}).length >= maxOpsOf(store);

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
    /**
     * Whether the request was answered before (its record exists). Asked only before a main
     * account or a sponsor is made to pay for a shortfall: a retransmission of a request
     * answered long ago, whose entry has left the account, must not move their money. Read
     * afresh each time it is asked (each round of cover, each attempt): a concurrent copy
     * of the request may have been answered since, and its entry removed.
     */
    answeredBefore?: () => Promise<boolean>;
    /**
     * The main account the caller takes to pay (an attached account's: API.md has its
     * charges "debited from the main account", and its sessions draw on the main account's
     * service accounts), as this process knows it (knownMainAccount). The write requires the
     * account to be attached to exactly that one, or to none when null: a record naming the
     * wrong payer never lands, and no attached account spends before its caller knew to look
     * at its main account's service accounts. Refused for that alone: `otherMain`.
     */
    mainAccountId?: string | null;
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
    /** The account is attached to another main account than the condition named (now noted: knownMainAccount). */
    otherMain?: true;
    /** The account records MAX_RECORDED_OPS operations: no new one fits. */
    full?: true;
  };

/** The parts of the account UpdateItem that records an operation (see applyOp). */
export interface OpUpdate {
  UpdateExpression: string;
  ConditionExpression: string;
  ExpressionAttributeNames: Record<string, string>;
  ExpressionAttributeValues: Record<string, unknown>;
}

/**
 * The account write of an operation: money moves, `ops.<opId>` becomes `entry`, under the
 * condition of `condition`, carrying `removals`. `oneWrite`: the write goes in one
 * transaction with the operation's record (see one-write operations below). It leaves the
 * account as the two writes would (the entry stays until removed, the due mark is set), so a
 * retry or a duplicate that goes the two-write way finds what it would have found.
 */
export function opUpdate(store: Store, accountId: string, opId: string, condition: OpCondition, movement: Movement, entry: OpEntry, removals: Removal[], oneWrite = false): OpUpdate {
  const need = -movement.availableDelta;
  const names: Record<string, string> = { '#op': opId };
  const values: Record<string, unknown> = {
    ':db': movement.balanceDelta,
    ':dr': movement.reservedDelta,
    ':da': movement.availableDelta,
  };
  const conditions = ['attribute_exists(pk)'];
  const sets = ['balance = balance + :db', 'reserved = reserved + :dr', 'available = available + :da', 'ops.#op = :entry'];
  const removes: string[] = [];
  values[':entry'] = entry;
  if (need > 0) {
    conditions.push('available >= :need');
    values[':need'] = need;
  }
  if (oneWrite) {
    // A transaction returns no item, so what must look at the account after the write
    // (a threshold crossed, a service account's recharge) goes the two-write way.
    conditions.push('attribute_not_exists(lowBalanceThreshold)', 'attribute_not_exists(classification)');
    // A hold going back on a member with a consumption limit: what it then holds beyond the
    // limit must go back too (applyOp, giveBackPastLimit), which needs the item.
    if (movement.reservedDelta < 0) conditions.push('attribute_not_exists(consumptionLimit)');
  }
  if (condition.kind === 'new' && typeof condition.mainAccountId === 'string') {
    conditions.push('mainAccountId = :main');
    values[':main'] = condition.mainAccountId;
  } else if (condition.kind === 'new' && condition.mainAccountId === null) {
    conditions.push('attribute_not_exists(mainAccountId)');
  }
  // Only while the account may charge: any new operation, and a later step that grants (RFC
  // 8506: no quota for an account that expired or was suspended mid-session). A step that
  // grants nothing (a report refused its grant, a debit, an expiry) still charges its usage.
  if (authorizes(condition, entry)) {
    conditions.push(USABLE_CONDITION);
    names['#status'] = 'status';
    values[':active'] = 'active';
    values[':now'] = store.now().toISOString();
  }
  if (condition.kind === 'new') {
    conditions.push('attribute_not_exists(ops.#op)', ROOM_CONDITION);
    // A close in this process makes room at once: its removal rides on this very write
    // (fails before: counted as still there, the write failed and the removal with it;
    // review 25 of stop 28).
    values[':maxOps'] = maxOpsOf(store) + removals.length;
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
  removals.forEach((removal, i) => {
    names[`#f${i}`] = removal.opId;
    values[`:f${i}`] = removal.n;
    conditions.push(`ops.#f${i}.n = :f${i}`);
    removes.push(`ops.#f${i}`);
  });
  return {
    UpdateExpression: `SET ${sets.join(', ')}${removes.length ? ` REMOVE ${removes.join(', ')}` : ''}`,
    ConditionExpression: conditions.join(' AND '),
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
}

/**
 * `tries`: how many writes of this request were refused before; `gave`: how many sponsor
 * transfers it has seen (its cover key; cover.ts).
 */
export async function applyOp(store: Store, accountId: string, opId: string, condition: OpCondition, movement: Movement, entry: OpEntry, tries = 0, gave = 0): Promise<OpResult> {
  const need = -movement.availableDelta;
  const removals = claimRemovals(store, accountId, opId);
  let result;
  try {
    result = await withConflictRetry(() => store.db.send(new UpdateCommand({
      TableName: store.tableName,
      Key: key.account(accountId),
      ...opUpdate(store, accountId, opId, condition, movement, entry, removals),
      ReturnValues: 'ALL_NEW',
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
    })));
  } catch (error) {
    if (!isConditionFailure(error)) {
      settleRemovals(store, accountId, removals, 'unknown');
      throw error;
    }
    const account = (plainItem(error.Item) as AccountItem | undefined) ?? null;
    noteMainAccount(store, account);
    // A removal whose entry is gone or replaced fails the whole write: drop it, write again
    // (one more call, only when a removal was stale).
    const stale = removals.filter((removal) => account?.ops?.[removal.opId]?.n !== removal.n);
    settleRemovals(store, accountId, removals.filter((removal) => !stale.includes(removal)), 'refused');
    if (stale.length) return applyOp(store, accountId, opId, condition, movement, entry, tries, gave);
    if (account && condition.kind === 'new' && condition.mainAccountId !== undefined && (account.mainAccountId ?? null) !== condition.mainAccountId) {
      return { ok: false, account, otherMain: true };
    }
    // A service account spends for its owner: not for a suspended or expired one. First: the
    // owner's item being full says nothing of the service account's (review 25 of stop 28).
    if (condition.kind === 'new' && condition.serviceId && account && Object.hasOwn(account.serviceAccounts ?? {}, condition.serviceId)
      && refusalOf(account, opId, store.now()) !== 'account_inactive') {
      return { ok: false, account, route: serviceAccountId(accountId, condition.serviceId) };
    }
    if (condition.kind === 'new' && account && opsFull(store, account, opId)) {
      // Finished ones among them go at the sweep's next visit, asked for now.
      await askSweepSoon(store, accountId).catch(() => undefined);
      return { ok: false, account, full: true };
    }
    // Short of money only: whoever pays for the account is asked (coverShortfall). Again
    // after a write refused once more: a retry may find the money taken by a concurrent
    // charge (concurrent shortfalls each get what they lack, each transfer guarded to land
    // once per operation and try). At most MAX_COVER_TRIES tries.
    if (!account || tries >= MAX_COVER_TRIES || !hasCover(account) || !onlyMoneyShort(account, opId, condition, entry, need, store.now())) return { ok: false, account };
    // A request answered before, its entry long gone from the account, makes no one pay: its
    // caller replays the answer.
    if (condition.kind === 'new' && condition.answeredBefore && await condition.answeredBefore()) return { ok: false, account };
    // What asks for cover: this operation (a session's step by its seq), for its n-th sponsor
    // transfer (coverShortfall).
    const coverKey = `${opId}:${condition.kind === 'step' ? `${condition.seq}:` : ''}#${gave}`;
    // Before a sponsor pays, the write is looked at again (one read, only then): a copy of
    // this request may have been applied meanwhile.
    const stillShort = async () => {
      const fresh = await getAccountItem(store, accountId);
      return !!fresh && onlyMoneyShort(fresh, opId, condition, entry, need, store.now());
    };
    const covered = await coverShortfall(store, account, need - account.available, coverKey, tries === 0, tries, stillShort);
    if (covered.retry) return applyOp(store, accountId, opId, condition, movement, entry, tries + 1, gave + (covered.gave ? 1 : 0));
    if (covered.taken !== undefined) return { ok: false, account, main: covered.taken };
    return { ok: false, account };
  }
  settleRemovals(store, accountId, removals, 'applied');
  const account = result.Attributes as AccountItem;
  noteMainAccount(store, account);
  // Below a minimum level: a threshold recharge and a notification (no call otherwise). The
  // charge stands whatever happens here: a retry would find it applied and not cross again,
  // so failing the request would lose the recharge as surely as logging does. First, before
  // anything below can fail the request.
  await afterCharge(store, account, movement).catch((error) => {
    console.error(JSON.stringify({ level: 'ERROR', message: 'threshold recharge not recorded', accountId, error: String(error) }));
  });
  // A member's hold went back past a lowered consumption limit: the excess goes back to the
  // main account now. After the write stands, as the threshold above.
  if (movement.reservedDelta < 0) await giveBackPastLimit(store, account).catch(logGiveBackFailure(accountId));
  // The backstop, after the charge stands: like the threshold above, a failure here must not
  // fail the request (the account's own due mark brings the sweep within 5 minutes anyway).
  if (finishedCount(account) > BACKSTOP_THRESHOLD) {
    await askSweepSoon(store, accountId).catch((error) => {
      console.error(JSON.stringify({ level: 'ERROR', message: 'could not ask the sweep to compact', accountId, error: String(error) }));
    });
  }
  return { ok: true, account };
}

/** Whether the operation authorizes something new: any new operation, and a step that grants. */
const authorizes = (condition: OpCondition, entry: OpEntry) => condition.kind === 'new' || grantsUnits(entry);
/**
 * A step that grants units, also within a block already paid (no money held for it): fails
 * before, an expired account's update was granted 500 KB of a paid block (review 23 of stop 28).
 */
const grantsUnits = (entry: OpEntry) => (entry.gu > 0 || entry.amt > 0) && !entry.done;

/** The write failed only because `available` was below `need`. */
function onlyMoneyShort(account: AccountItem, opId: string, condition: OpCondition, entry: OpEntry, need: number, now: Date): boolean {
  if (account.available >= need) return false;
  const recorded = account.ops?.[opId];
  if (condition.kind === 'new') return !recorded && refusalOf(account, opId, now) === 'insufficient';
  // A step that grants needs a usable account, as its write does (opUpdate): no one pays for
  // a suspended or expired one (fails before: a main account's sponsor paid for an update
  // answered 403; review). One that grants nothing still charges its usage.
  const grants = grantsUnits(entry);
  return recorded?.seq === condition.seq && !recorded.done && (!grants || usableAt(account, now.toISOString()));
}

/** Why a new operation was refused, in the order a caller should hear it. */
export function refusalOf(account: AccountItem | null, opId: string, now: Date):
  'not_found' | 'exists' | 'account_inactive' | 'insufficient' {
  if (!account) return 'not_found';
  if (account.ops?.[opId]) return 'exists';
  if (!usableAt(account, now.toISOString())) return 'account_inactive';
  return 'insufficient';
}

// ---------------------------------------------------------------- one-write operations
//
// Most accounts are not hot: one session at a time, or a few. For them the account write and
// the operation's record (session item, ledger entries, answer) go in one TransactWriteItems:
// one call where two writes were, and no half-done state for anyone to finish. An account
// that meets a transaction conflict is hot (in AWS, concurrent transactions on one item are
// cancelled), and this process writes it the two-write way (applyOp, then the record) for a
// while: a busy account is never funnelled through transactions. Any refusal falls back to
// the two-write path too, which already handles every state an account can be in (shortfall,
// allotments, sponsors, routing, duplicates); the one write leaves either nothing or exactly
// what the two writes together leave, so the fallback needs nothing new. Afterwards the
// caller does what it does after a recorded two-write operation (markFinalized).

/** How long an account that met a conflict is written the two-write way by this process. */
export const CONTENDED_MS = 60_000;
/** How long an account that needs the two-write way (a threshold to watch, routing) is remembered. */
const NEEDS_TWO_WRITES_MS = 5 * 60_000;
const twoWritesUntil = new Map<string, number>();
const memoryKey = (store: Store, accountId: string) => `${store.tableName}/${accountId}`;

/**
 * Whether this process tries the account's next operation as one write. Never on a service
 * account: a charge there must look at the level it leaves (its threshold recharge), and a
 * transaction returns no item.
 */
export function oneWriteAllowed(store: Store, accountId: string): boolean {
  if (store.twoWriteSteps || isServiceAccountId(accountId)) return false;
  const until = twoWritesUntil.get(memoryKey(store, accountId));
  if (until === undefined) return true;
  if (until > store.now().getTime()) return false;
  twoWritesUntil.delete(memoryKey(store, accountId));
  return true;
}

/**
 * The main account of each attached account this process has written (null: not attached).
 * An account's mainAccountId is set at its creation and never changes, so this is never
 * stale; a one write that guessed wrong (an attached account not seen yet) is refused by its
 * condition, and the two-write way that follows learns it.
 */
const mainAccounts = new Map<string, string | null>();

export function knownMainAccount(store: Store, accountId: string): string | null | undefined {
  return mainAccounts.get(memoryKey(store, accountId));
}

function noteMainAccount(store: Store, account: AccountItem | null): void {
  if (!account?.accountId) return;
  if (mainAccounts.size > 10_000) mainAccounts.clear(); // a bound, not a cache policy
  mainAccounts.set(memoryKey(store, account.accountId), account.mainAccountId ?? null);
}

function preferTwoWrites(store: Store, accountId: string, forMs: number): void {
  if (twoWritesUntil.size > 10_000) twoWritesUntil.clear(); // a bound, not a cache policy
  twoWritesUntil.set(memoryKey(store, accountId), store.now().getTime() + forMs);
}

/**
 * `applied`: the account write and the record landed together. `record_refused`: a record
 * item's condition failed (at `index` in `record`) and the account carries nothing of this
 * operation, so nothing was written: the record exists already (a duplicate, a step recorded
 * meanwhile). The account may have refused too (short of money, by now): the caller answers
 * from the record, and no sponsor or main account is asked to pay for a request answered
 * long ago. `fallback`: anything else (a refusal, a conflict, a timeout that may have
 * landed): go the two-write way, which finds out. That includes a record refused while the
 * account carries an entry of this operation: it may be what an earlier two-write attempt of
 * this very request left (a charge or a hold taken before it learnt the record existed, and
 * not yet given back), which only the two-write path finishes. `recordChecked`: the
 * transaction was refused on its conditions alone and the record's passed (it is absent);
 * not after a conflict or a timeout.
 */
export type OneWriteOutcome = { outcome: 'applied' } | { outcome: 'record_refused'; index: number } | { outcome: 'fallback'; recordChecked: boolean };

export async function applyOpWithRecord(store: Store, accountId: string, opId: string, condition: OpCondition, movement: Movement, entry: OpEntry,
  record: Array<Record<string, unknown>>): Promise<OneWriteOutcome> {
  const removals = claimRemovals(store, accountId, opId);
  try {
    await store.db.send(new TransactWriteCommand({
      TransactItems: [
        { Update: {
          TableName: store.tableName, Key: key.account(accountId),
          ...opUpdate(store, accountId, opId, condition, movement, entry, removals, true),
          ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
        } },
        ...record,
      ] as any,
    }));
  } catch (error) {
    const reasons = cancellationReasons(error);
    settleRemovals(store, accountId, removals, reasons ? 'refused' : 'unknown');
    if (!reasons) return { outcome: 'fallback', recordChecked: false };
    if (reasons.some((r) => r.Code === 'TransactionConflict')) {
      preferTwoWrites(store, accountId, CONTENDED_MS);
      return { outcome: 'fallback', recordChecked: false };
    }
    const index = reasons.findIndex((r, i) => i > 0 && r.Code === 'ConditionalCheckFailed');
    const account = plainItem(reasons[0]?.Item) as Partial<AccountItem & { classification: string }> | undefined;
    if (account?.accountId) noteMainAccount(store, account as AccountItem);
    // An account that routes this service to a service account may have had the operation
    // land there (a hold or charge an earlier attempt left): the two-write way finds it.
    const routes = condition.kind === 'new' && condition.serviceId !== undefined && Object.hasOwn(account?.serviceAccounts ?? {}, condition.serviceId);
    const accountCarriesIt = reasons[0]?.Code === 'ConditionalCheckFailed' && (!account || routes || Object.hasOwn(account.ops ?? {}, opId));
    if (index > 0 && !accountCarriesIt) return { outcome: 'record_refused', index: index - 1 };
    // An account the one write can never serve (a threshold to watch, a service account) or
    // that routes services to service accounts goes the two-write way for a while, without a
    // refused transaction first.
    if (account && (account.lowBalanceThreshold !== undefined || account.classification !== undefined || account.serviceAccounts)) {
      preferTwoWrites(store, accountId, NEEDS_TWO_WRITES_MS);
    }
    // A record refused while the account may carry the operation: the record exists.
    return { outcome: 'fallback', recordChecked: index < 0 };
  }
  settleRemovals(store, accountId, removals, 'applied');
  return { outcome: 'applied' };
}
