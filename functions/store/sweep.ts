// The sweep's loop: due sessions and accounts from the sparse index, in bounded batches, each
// handled by conditional writes on the base items (the index is only a hint: it is
// eventually consistent).
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { findDuePage, findDueSessions, sweepSession, type DueCursors, type SweepOutcome } from './sessions.js';
import { returnIdleAllotment } from './allotments.js';
import { askForMissedRecharge } from './serviceAccounts.js';
import { sweepAccount } from './compaction.js';
import { giveMembersStatus, markAccountDue } from './accounts.js';
import { key } from './table.js';
import { isConditionFailure, type Store } from './db.js';

export interface SweepSummary {
  examined: number;
  expired: number;
  reportsRequested: number;
  /** Idle allotments given back to their main accounts. */
  allotmentsReturned: number;
  /** Holds whose reserve died before writing its session, given back (see compaction.ts). */
  orphansReleased: number;
  notDue: number;
  gone: number;
  /** Due sessions left for the next run (the batches ran out): the "falling behind" signal. */
  backlog: number;
}

type Outcome = SweepOutcome | 'returned' | 'released';

/**
 * Items swept at once. A batch holds up to 8 shards × batchSize ids; starting them all at once
 * would queue on the SDK's 50 sockets (and warn) and hit the table in one burst.
 */
const SWEEP_IN_FLIGHT = 32;

/** `run` over `items`, at most `limit` at a time; results in the order of `items`. */
async function mapInFlight<T, R>(items: T[], limit: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await run(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Due items counted after a run that did not drain (per shard, so at most 8 times this). */
const BACKLOG_COUNT_PER_SHARD = 125;

/**
 * `timeLeft`: the handler's remaining time (Lambda's getRemainingTimeInMillis): no batch
 * starts with less than `reserveMs` left, so a run ends with its summary (and its backlog
 * metric) instead of a timeout; what it leaves is due for the next run.
 */
export async function sweep(store: Store, options: { batchSize: number; maxBatches: number; timeLeft?: () => number; reserveMs?: number }): Promise<SweepSummary> {
  const summary: SweepSummary = { examined: 0, expired: 0, reportsRequested: 0, allotmentsReturned: 0, orphansReleased: 0, notDue: 0, gone: 0, backlog: 0 };
  const seen = new Set<string>();
  const now = store.now().toISOString();
  // One item failing (throttled, contended) does not keep the run from the others; the run
  // still fails at its end, so the failure is seen (the item stays due for the next run).
  let failure: { error: unknown } | undefined;
  const settle = (run: () => Promise<Outcome>) => run().catch((error): null => { failure ??= { error }; return null; });
  let drained = false;
  const reserveMs = options.reserveMs ?? 15_000;
  // Each shard is read on from where the last batch stopped: items that stay due (one that
  // failed, or was left as it was) are not read again in this run, so however many there are
  // they never keep the run from what is due behind them.
  let cursors: DueCursors = [];
  for (let batch = 0; batch < options.maxBatches && !drained; batch++) {
    if (options.timeLeft && options.timeLeft() < reserveMs) break;
    const page = await findDuePage(store, now, options.batchSize, cursors);
    cursors = page.next;
    drained = cursors.every((cursor) => cursor === null);
    const due = page.ids.filter((id) => !seen.has(id));
    due.forEach((id) => seen.add(id));
    const outcomes = await mapInFlight(due, SWEEP_IN_FLIGHT, (id) => settle(() => (id.startsWith('ACC#')
      ? sweepAccountItem(store, id.slice('ACC#'.length))
      : sweepSession(store, id))));
    for (const outcome of outcomes) {
      summary.examined++;
      if (outcome === 'expired') summary.expired++;
      else if (outcome === 'report_requested') summary.reportsRequested++;
      else if (outcome === 'returned') summary.allotmentsReturned++;
      else if (outcome === 'released') summary.orphansReleased++;
      else if (outcome === 'not_due') summary.notDue++;
      else if (outcome !== null) summary.gone++;
    }
  }
  // What is still due after the run, up to 1000: the metric the "sweep falls behind" alarm watches.
  if (!drained) summary.backlog = (await findDueSessions(store, now, BACKLOG_COUNT_PER_SHARD)).filter((id) => !seen.has(id)).length;
  if (failure) throw Object.assign(failure.error as object, { summary });
  return summary;
}

/**
 * An account in the due index: what its operations left unfinished is finished (see
 * sweepAccount), an attached account's idle allotment goes back, and the account's place in
 * the index moves to when it next needs a look, or it leaves the index when nothing is left.
 */
async function sweepAccountItem(store: Store, accountId: string): Promise<Outcome> {
  const visit = await sweepAccount(store, accountId);
  if (!visit.account) return 'gone';
  const { status, statusSeq, statusPendingSince } = visit.account;
  // A PATCH that died before its members all took the status (setAccountStatus).
  if (statusPendingSince && statusSeq !== undefined) await giveMembersStatus(store, accountId, status, statusSeq);
  await askForMissedRecharge(store, visit.account);
  let outcome: Outcome = visit.released > 0 ? 'released' : 'not_due';
  if (visit.account.mainAccountId) {
    const idle = await returnIdleAllotment(store, accountId);
    if (idle.outcome === 'returned' && outcome === 'not_due') outcome = 'returned';
    const next = [visit.next, idle.next].filter((at): at is string => at !== null).sort()[0];
    if (next) await markAccountDue(store, accountId, next);
    else await unmarkIfEmpty(store, accountId, idle.allotSeq);
    return outcome;
  }
  if (visit.next) await markAccountDue(store, accountId, visit.next);
  else await unmarkIfEmpty(store, accountId);
  return outcome;
}

/**
 * Out of the index only while `ops` is empty, checked in the same write: an operation that
 * lands meanwhile did not mark the account (it was marked), so the mark must stay for it. An
 * attached account also only while no allotment was taken since the visit (`allotSeq`).
 */
async function unmarkIfEmpty(store: Store, accountId: string, allotSeq?: number): Promise<void> {
  const allotGuard = allotSeq === undefined ? '' : allotSeq === 0 ? ' AND attribute_not_exists(allotSeq)' : ' AND allotSeq = :seq';
  try {
    await store.db.send(new UpdateCommand({
      TableName: store.tableName, Key: key.account(accountId),
      UpdateExpression: 'REMOVE dueShard, dueAt',
      // Nor while a status is on its way to the members (a newer PATCH's, since the visit).
      ConditionExpression: `size(ops) = :zero AND attribute_not_exists(statusPendingSince)${allotGuard}`,
      ExpressionAttributeValues: { ':zero': 0, ...(allotSeq ? { ':seq': allotSeq } : {}) },
    }));
  } catch (error) {
    if (!isConditionFailure(error)) throw error; // entries came: the mark stays (due now: the next run looks)
  }
}
