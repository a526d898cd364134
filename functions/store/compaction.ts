// Keeping the hot account item small, and finishing what handlers left half done on it.
// Every finished operation stays in `ops` until its record (session item or request item,
// plus ledger) is known to be written, because a retry needs it to tell "applied" from "new".
// After that it is garbage:
//   1. finalized entries are queued in this process and removed by the next write this
//      process makes to the same account (no extra call on the charging path);
//   2. the sweep visits accounts the due index holds (a new operation puts its account there,
//      see applyOp) and finishes or removes what is old on them: finished entries nobody
//      removed, debits whose record was never written, holds whose session never was
//      (their reserve died after the account write and was not retried);
//   3. a backstop: when an account write comes back carrying many finished entries (their
//      processes never wrote to the account again), the account's due mark is brought to
//      now, so the sweep's visit (2) comes within a minute. The charging path itself never
//      finishes other requests' records: that stays off it, in the sweep.
//
// Every removal is conditional on the entry's nonce (`n`): an entry removed once and created
// again under the same id (a late duplicate of a debit or a reserve) is another entry, and a
// removal queued for the first one must never take the second (its money would be stranded).
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { key } from './table.js';
import { isConditionFailure, type Store } from './db.js';
import { getAccountItem, markAccountDue, type AccountItem, type OpEntry } from './accounts.js';
import { ensureDirectDebitRecorded } from './debits.js';
import { getSessionItem, releaseOrphanHold, rollForward, voidHold, type SessionItem } from './sessions.js';
import { settleMultiSession } from './multisession.js';
import { isOpen } from '../domain/session.js';
import { ChargingError } from '../domain/errors.js';

/** Per account, the finalized entries this process may remove: opId → nonce. */
const queue = new Map<string, Map<string, string>>();
const queueKey = (store: Store, accountId: string) => `${store.tableName}/${accountId}`;

export interface Removal { opId: string; n: string }

/** The record of `opId` is written: its entry on the account (this very one, by nonce) may go. */
export function markFinalized(store: Store, accountId: string, opId: string, entry: Pick<OpEntry, 'n'>): void {
  const k = queueKey(store, accountId);
  const entries = queue.get(k) ?? new Map<string, string>();
  entries.set(opId, entry.n);
  queue.set(k, entries);
}

/**
 * Finished entries one write carries away at most (claimRemovals). Within this of its cap an
 * account is crowded: what its writes carry may no longer make room (sweepAccount).
 */
const REMOVALS_PER_WRITE = 16;

/**
 * Takes up to `max` queued removals (never `except`) for the next write to carry. They leave
 * the queue while that write is in flight, so a concurrent write in this process (the local
 * server runs requests concurrently) never carries them too; `settleRemovals` says what
 * became of them.
 */
export function claimRemovals(store: Store, accountId: string, except: string, max = REMOVALS_PER_WRITE): Removal[] {
  const k = queueKey(store, accountId);
  const entries = queue.get(k);
  if (!entries) return [];
  const claimed = [...entries].filter(([opId]) => opId !== except).slice(0, max).map(([opId, n]) => ({ opId, n }));
  for (const { opId } of claimed) entries.delete(opId);
  if (entries.size === 0) queue.delete(k);
  return claimed;
}

/**
 * `applied`: the write landed, they are gone. `refused`: it did not land, they wait for the
 * next one (unless something newer was queued meanwhile). `unknown` (a timeout, a dead
 * connection): they may be gone already, and carrying them again could only fail; they are
 * dropped, and the sweep removes whatever is left.
 */
export function settleRemovals(store: Store, accountId: string, removals: Removal[], outcome: 'applied' | 'refused' | 'unknown'): void {
  if (outcome !== 'refused' || removals.length === 0) return;
  const k = queueKey(store, accountId);
  const entries = queue.get(k) ?? new Map<string, string>();
  for (const { opId, n } of removals) if (!entries.has(opId)) entries.set(opId, n);
  queue.set(k, entries);
}

/** The entry went by other means (the sweep, the backstop): nothing to carry any more. */
function unqueue(store: Store, accountId: string, opId: string): void {
  const k = queueKey(store, accountId);
  queue.get(k)?.delete(opId);
  if (queue.get(k)?.size === 0) queue.delete(k);
}

export const BACKSTOP_THRESHOLD = 64;
/**
 * Operations an account's item records at once (its `ops` map: open ones, and finished ones
 * not removed yet), ~300 bytes each at most (a 128-character requestId): the item stays well
 * under DynamoDB's 400 KB. A new operation past it is refused (ops.ts; fails before: past
 * ~2,000 open sessions every reserve and event was a 500; review 22 of stop 28).
 */
export const MAX_RECORDED_OPS = 1000;
export const maxOpsOf = (store: Store) => store.maxRecordedOps ?? MAX_RECORDED_OPS;
/** Finished entries younger than this are left to the queue of the process that finished them. */
export const FINISHED_AGE_MS = 5 * 60_000;
/** A hold still live this long after its validUntil, with no session item, is an orphan. */
export const ORPHAN_GRACE_MS = 60_000;
/**
 * A released orphan stays (as a finished entry carrying the hold, `o`) longer than any
 * handler can run, so a reserve that found the hold live and is still writing its session
 * finds the release and records it as the session's expiry.
 */
export const RELEASED_AGE_MS = 15 * 60_000;
/** The sweep looks at an account with entries left on it again within these bounds. */
const REVISIT_MIN_MS = 60_000;
export const REVISIT_MAX_MS = 5 * 60_000;

/** When this process last brought an account's due mark forward (askSweepSoon), by account. */
const askedAt = new Map<string, number>();

/**
 * The backstop: an account carrying more than BACKSTOP_THRESHOLD finished entries is put in
 * the due index at now (only ever earlier than its mark), so the next sweep run visits it and
 * removes what is old (sweepAccount). At most once a minute per account and process: the
 * account is hot, and every write to it counts.
 */
export async function askSweepSoon(store: Store, accountId: string): Promise<void> {
  const nowMs = store.now().getTime();
  const memory = queueKey(store, accountId);
  if ((askedAt.get(memory) ?? -Infinity) > nowMs - REVISIT_MIN_MS) return;
  if (askedAt.size > 10_000) askedAt.clear(); // a bound, not a cache policy
  askedAt.set(memory, nowMs);
  await markAccountDue(store, accountId, new Date(nowMs).toISOString(), { onlyEarlier: true });
}

export interface AccountSweep {
  /** Holds whose reserve never wrote its session, given back. */
  released: number;
  /** Finished entries removed (their records written first where they never were). */
  removed: number;
  /** Duplicate holds or debits given back. */
  voided: number;
  /** When the account needs looking at again (null: nothing left on it). */
  next: string | null;
  account: AccountItem | null;
}

/**
 * The sweep's visit of an account the due index holds: everything old on its `ops` is
 * finished (recorded, or given back) and removed. Off the charging path; every write is
 * conditional on the entry's nonce, so a request racing it decides nothing twice.
 */
export async function sweepAccount(store: Store, accountId: string): Promise<AccountSweep> {
  const account = await getAccountItem(store, accountId);
  const result: AccountSweep = { released: 0, removed: 0, voided: 0, next: null, account };
  if (!account) return result;
  const nowMs = store.now().getTime();
  // Near its cap (ops.ts refuses new operations there and asks for this visit), finished
  // entries go at once, not after FINISHED_AGE_MS: a full account waited 5 minutes for room
  // (review 25 of stop 28). Their records are made sure of first, as always.
  const crowded = Object.keys(account.ops ?? {}).length >= maxOpsOf(store) - REMOVALS_PER_WRITE;
  let next = Infinity;
  const later = (atMs: number) => { next = Math.min(next, Math.max(nowMs + REVISIT_MIN_MS, Math.min(atMs, nowMs + REVISIT_MAX_MS))); };
  const visit = async (opId: string, entry: OpEntry) => {
    if (entry.done) {
      const dueMs = Date.parse(entry.at) + (entry.o ? RELEASED_AGE_MS : crowded ? 0 : FINISHED_AGE_MS);
      if (dueMs > nowMs) { later(dueMs); return; }
      const state = await ensureRecorded(store, account, opId, entry);
      if (state === 'recorded' && (await removeEntry(store, accountId, opId, entry))) result.removed++;
      else if (state === 'given_back') result.voided++;
      else if (state === 'unknown') later(nowMs + REVISIT_MAX_MS);
      return;
    }
    // A live hold. Only a reserve's (seq 1) can lack its session: every later step reads it first.
    const dueMs = Date.parse(entry.vu ?? entry.at) + ORPHAN_GRACE_MS;
    if (opId.startsWith('evt:') || entry.seq !== 1 || dueMs > nowMs) { later(dueMs); return; }
    const session = await getSessionItem(store, opId);
    if (session?.parties) {
      // A party's hold is written with its session, never an orphan. On an account that is
      // no party, it is a plain reserve's under a proposal's id (its requestId reused) that
      // died before it found the session: nobody else will give it back.
      if (chargesAccount(session, accountId)) later(nowMs + REVISIT_MAX_MS);
      else if (await voidHold(store, accountId, opId, entry)) result.voided++;
      return;
    }
    if (!session) {
      if (await releaseOrphanHold(store, accountId, opId, entry)) result.released++;
      later(nowMs + RELEASED_AGE_MS);
    } else if (session.nonce !== entry.n) {
      // A late duplicate of a finished session's reserve took this hold and died before it
      // found the session: the session never knew it.
      if (await voidHold(store, accountId, opId, entry)) result.voided++;
    } else {
      later(nowMs + REVISIT_MAX_MS); // the session's own hold: its expiry is the session's sweep
    }
  };
  // One entry failing (throttled, contended) does not keep the visit from the others (an
  // orphan hold behind it would wait a run more); the visit still fails, and the account
  // stays due, so the failure is seen and the entry looked at again.
  let failure: { error: unknown } | undefined;
  for (const [opId, entry] of Object.entries(account.ops ?? {})) {
    await visit(opId, entry).catch((error) => { failure ??= { error }; });
  }
  if (failure) throw failure.error;
  result.next = Number.isFinite(next) ? new Date(next).toISOString() : null;
  return result;
}

/** Removes a finished entry, this very one (by nonce). */
async function removeEntry(store: Store, accountId: string, opId: string, entry: OpEntry): Promise<boolean> {
  unqueue(store, accountId, opId);
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'REMOVE ops.#op', ConditionExpression: 'ops.#op.n = :n',
      ExpressionAttributeNames: { '#op': opId }, ExpressionAttributeValues: { ':n': entry.n },
    }));
    return true;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
    return false; // removed meanwhile (by a queued removal), or replaced
  }
}

/**
 * Makes sure the record of a finished operation exists, finishing it from the entry if not.
 * `given_back`: the entry was a duplicate debit and went back (it is gone already).
 */
async function ensureRecorded(store: Store, account: AccountItem, opId: string, entry: OpEntry): Promise<'recorded' | 'given_back' | 'unknown'> {
  const accountId = account.accountId;
  if (opId.startsWith('evt:')) return ensureDirectDebitRecorded(store, account, entry);
  const session = await getSessionItem(store, opId);
  // A released orphan with no session of its own here: nothing was ever recorded, and nothing
  // is owed. A session of that id on another account (a late retry routed to a service
  // account the owner created meanwhile) is not this entry's: it must not be rolled forward.
  if (!session || !chargesAccount(session, accountId)) return entry.o ? 'recorded' : 'unknown';
  if (session.seq >= entry.seq) return (await settledIfOwed(store, session)) ? 'recorded' : 'unknown';
  if (session.seq !== entry.seq - 1) return 'unknown';
  await rollForward(store, session, entry);
  const after = await getSessionItem(store, opId);
  return after && after.seq >= entry.seq ? 'recorded' : 'unknown';
}

/** Whether `accountId` is the account (or one of the parties) the session charges. */
const chargesAccount = (session: SessionItem, accountId: string) =>
  session.parties ? session.parties.some((p) => p.accountId === accountId) : session.chargedAccountId === accountId;

/**
 * A closed member of a multi-session may be the one whose settlement never ran (see
 * afterClose): settling is idempotent, so it is simply run again before the entry goes.
 * False when it could not be done now (the entry stays for the next visit).
 */
async function settledIfOwed(store: Store, session: SessionItem): Promise<boolean> {
  if ((session.multiSessionId === session.sessionId && !session.membersJoined) || isOpen(session.state)) return true;
  try {
    return (await settleMultiSession(store, session.multiSessionId)).settled;
  } catch (error) {
    if (error instanceof ChargingError && error.code === 'temporarily_unavailable') return false;
    throw error;
  }
}

export function finishedCount(account: AccountItem): number {
  return Object.values(account.ops ?? {}).filter((e) => e.done).length;
}
