// The sweep's loop: due sessions from the sparse index, in bounded batches, each handled by
// conditional writes on the base items (the index is only a hint: it is eventually consistent).
import { findDueSessions, sweepSession, type SweepOutcome } from './sessions.js';
import { returnIdleAllotment } from './allotments.js';
import type { Store } from './db.js';
import type { Notifier } from '../notify.js';

export interface SweepSummary {
  examined: number;
  expired: number;
  reportsRequested: number;
  /** Idle allotments given back to their main accounts. */
  allotmentsReturned: number;
  notDue: number;
  gone: number;
  /** Due sessions left for the next run (the batches ran out): the "falling behind" signal. */
  backlog: number;
}

export async function sweep(store: Store, options: { batchSize: number; maxBatches: number; notifier?: Notifier }): Promise<SweepSummary> {
  const summary: SweepSummary = { examined: 0, expired: 0, reportsRequested: 0, allotmentsReturned: 0, notDue: 0, gone: 0, backlog: 0 };
  const seen = new Set<string>();
  const now = store.now().toISOString();
  for (let batch = 0; batch < options.maxBatches; batch++) {
    const due = (await findDueSessions(store, now, options.batchSize)).filter((id) => !seen.has(id));
    if (due.length === 0) return summary;
    due.forEach((id) => seen.add(id));
    const outcomes = await Promise.all(due.map((id): Promise<SweepOutcome | 'returned'> => id.startsWith('ACC#')
      ? returnIdleAllotment(store, id.slice('ACC#'.length)).then((r) => (r === 'returned' ? 'returned' : r === 'busy' ? 'not_due' : 'gone'))
      : sweepSession(store, id, options.notifier)));
    for (const outcome of outcomes) {
      summary.examined++;
      if (outcome === 'expired') summary.expired++;
      else if (outcome === 'report_requested') summary.reportsRequested++;
      else if (outcome === 'returned') summary.allotmentsReturned++;
      else if (outcome === 'not_due') summary.notDue++;
      else summary.gone++;
    }
  }
  summary.backlog = (await findDueSessions(store, now, 1)).filter((id) => !seen.has(id)).length;
  return summary;
}
