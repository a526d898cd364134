// The sweep's loop: due sessions from the index, in bounded batches, each expired by a
// conditional write on the base items (the index is only a hint: it is eventually consistent).
import { expireSession, findDueSessions } from './sessions.js';
import type { Store } from './db.js';

export interface SweepSummary {
  examined: number;
  expired: number;
  notDue: number;
  gone: number;
}

export async function sweep(store: Store, options: { batchSize: number; maxBatches: number }): Promise<SweepSummary> {
  const summary: SweepSummary = { examined: 0, expired: 0, notDue: 0, gone: 0 };
  const seen = new Set<string>();
  for (let batch = 0; batch < options.maxBatches; batch++) {
    const due = (await findDueSessions(store, store.now().toISOString(), options.batchSize)).filter((id) => !seen.has(id));
    if (due.length === 0) break;
    const outcomes = await Promise.all(due.map((id) => { seen.add(id); return expireSession(store, id); }));
    for (const outcome of outcomes) {
      summary.examined++;
      if (outcome === 'expired') summary.expired++;
      else if (outcome === 'not_due') summary.notDue++;
      else summary.gone++;
    }
  }
  return summary;
}
