// Keeping the hot account item small. Every finished operation stays in `ops` until its
// record (session item or request item, plus ledger) is known to be written, because a
// retry needs it to tell "applied" from "new". After that it is garbage:
//   1. finalized entries are queued in this process and removed by the next write this
//      process makes to the same account (no extra call on the charging path);
//   2. a backstop: when an account write comes back carrying many finished entries (their
//      process died before it could remove them), each is verified (and its record finished
//      if it never was) and removed.
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { key } from './table.js';
import type { Store } from './db.js';
import type { AccountItem, OpEntry } from './accounts.js';

const queue = new Map<string, Map<string, number>>();
const queueKey = (store: Store, accountId: string) => `${store.tableName}/${accountId}`;

/** The record of `opId` is written: its entry on the account may go. */
export function markFinalized(store: Store, accountId: string, opId: string, seq: number): void {
  const k = queueKey(store, accountId);
  const entries = queue.get(k) ?? new Map<string, number>();
  entries.set(opId, seq);
  queue.set(k, entries);
}

/** Up to `max` finalized entries to remove with the next write, never `except`. */
export function pendingRemovals(store: Store, accountId: string, except: string, max = 16): string[] {
  const entries = queue.get(queueKey(store, accountId));
  if (!entries) return [];
  return [...entries.keys()].filter((opId) => opId !== except).slice(0, max);
}

export function removed(store: Store, accountId: string, opIds: string[]): void {
  const k = queueKey(store, accountId);
  const entries = queue.get(k);
  if (!entries) return;
  for (const opId of opIds) entries.delete(opId);
  if (entries.size === 0) queue.delete(k);
}

export const BACKSTOP_THRESHOLD = 64;
const BACKSTOP_AGE_MS = 5 * 60_000;

/**
 * The backstop: verifies and removes finished entries older than a few minutes. Runs only
 * when an account carries more than BACKSTOP_THRESHOLD of them.
 */
export async function compactAccount(store: Store, account: AccountItem): Promise<number> {
  const cutoff = new Date(store.now().getTime() - BACKSTOP_AGE_MS).toISOString();
  const stale = Object.entries(account.ops ?? {}).filter(([, e]) => e.done && e.at < cutoff);
  let count = 0;
  for (const [opId, entry] of stale) {
    if (!(await ensureRecorded(store, account.accountId, opId, entry))) continue;
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(account.accountId),
      UpdateExpression: 'REMOVE ops.#op', ConditionExpression: 'ops.#op.seq = :seq',
      ExpressionAttributeNames: { '#op': opId }, ExpressionAttributeValues: { ':seq': entry.seq },
    })).then(() => { count++; }, (error) => { if ((error as Error).name !== 'ConditionalCheckFailedException') throw error; });
  }
  return count;
}

/** Makes sure the record of a finished operation exists, finishing it from the entry if not. */
async function ensureRecorded(store: Store, accountId: string, opId: string, entry: OpEntry): Promise<boolean> {
  if (opId.startsWith('evt:')) {
    const { recordDirectDebit } = await import('./debits.js');
    await recordDirectDebit(store, accountId, entry);
    return true;
  }
  const { getSessionItem, rollForward } = await import('./sessions.js');
  const session = await getSessionItem(store, opId);
  if (!session) return false; // a hold whose session was never written: left for an operator (see README)
  if (session.seq >= entry.seq) return true;
  if (session.seq === entry.seq - 1) {
    await rollForward(store, session, entry);
    return true;
  }
  return false;
}

export function finishedCount(account: AccountItem): number {
  return Object.values(account.ops ?? {}).filter((e) => e.done).length;
}
