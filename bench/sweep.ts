// The interim sweep over many due sessions among more idle ones, on a table of its own (the
// sweep looks at the whole due index, so other phases' sessions must not be in it) and with a
// clock the bench moves (Store.now):
//
//   T0        BENCH_SWEEP_SESSIONS due sessions (validity 60 s: due at T0+60 s) and
//             BENCH_SWEEP_IDLE_SESSIONS idle ones (validity 1 h, interim 30 min: due at
//             T0+30 min), round-robin over BENCH_SWEEP_ACCOUNTS accounts, by reserve at c=32;
//   T0+90 s   the sweep runs (SWEEP_BATCH_SIZE / SWEEP_MAX_BATCHES as the handler reads them)
//             until a run finds nothing due. The accounts' own due marks (a hold's validity
//             plus a minute's grace: T0+120 s at the earliest) are not due yet, so what is
//             measured is the sessions' sweep alone.
//
// Items read are counted as test/store/multisession-sweep.test.ts does, over every read:
// items returned by Query, GetItem and BatchGetItem. Every key read is kept, to show that no
// idle session was read (neither returned by the index query nor fetched).
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { countingDb, createStore, ensureTable, type Db } from '../functions/store/db.js';
import { putService } from '../functions/store/services.js';
import { getAccountItem } from '../functions/store/accounts.js';
import { getSessionItem, reserve } from '../functions/store/sessions.js';
import { sweep, type SweepSummary } from '../functions/store/sweep.js';
import { createProgress } from './progress.js';
import { CONCURRENCY, envInt, envNum, errorsText, expectStatus, fmt, makeAccounts, passMiss, runPhase, table, type TargetRow } from './common.js';

const DUE_SESSIONS = envInt('BENCH_SWEEP_SESSIONS', 10_000);
const IDLE_SESSIONS = envInt('BENCH_SWEEP_IDLE_SESSIONS', 12_000);
const ACCOUNTS = envInt('BENCH_SWEEP_ACCOUNTS', 400);
/** Time caps: creating the due sessions, then the idle ones; the sweep runs. */
const CREATE_DUE_SECONDS = envNum('BENCH_SWEEP_CREATE_DUE_SECONDS', 90);
const CREATE_IDLE_SECONDS = envNum('BENCH_SWEEP_CREATE_IDLE_SECONDS', 90);
const SWEEP_SECONDS = envNum('BENCH_SWEEP_SECONDS', 150);
const BATCH_SIZE = envInt('SWEEP_BATCH_SIZE', 100);
const MAX_BATCHES = envInt('SWEEP_MAX_BATCHES', 50);

const dueService = { serviceId: 'sweep-due', unit: 'seconds' as const, price: { amountMinor: 2, perUnits: 60 }, validitySeconds: 60, interimIntervalSeconds: 3600 };
const idleService = { serviceId: 'sweep-idle', unit: 'seconds' as const, price: { amountMinor: 2, perUnits: 60 }, validitySeconds: 3600, interimIntervalSeconds: 1800 };
const SWEEP_AFTER_SECONDS = 90;

export interface SweepResult {
  accounts: number;
  due: { asked: number; created: number; wallMs: number; stoppedByTime: boolean; errors: Map<string, number> };
  idle: { asked: number; created: number; wallMs: number; stoppedByTime: boolean; errors: Map<string, number> };
  runs: number;
  summary: SweepSummary;
  wallMs: number;
  stoppedByTime: boolean;
  failures: string[];
  calls: Map<string, number>;
  itemsRead: { query: number; get: number; batchGet: number };
  idleRead: number;
  /** Of a sample of about 200 due sessions (dueSampled), how many are not 'expired' after the sweep. */
  dueLeftActive: number;
  dueSampled: number;
  idleSampled: number;
  idleSampleActive: number;
  reservedMismatches: number;
  batchSize: number;
  maxBatches: number;
}

/** Counts the items every read returns, and keeps the partition keys it saw. */
function readCounter(inner: Db) {
  const state = { query: 0, get: 0, batchGet: 0, transactWrites: 0, pks: new Set<string>(), onWrite: () => {} };
  const db: Db = {
    send: async (command: any) => {
      const name = command.constructor.name as string;
      const out = await inner.send(command);
      if (name === 'QueryCommand') {
        for (const item of out?.Items ?? []) state.pks.add(String(item.pk));
        state.query += out?.Items?.length ?? 0;
      } else if (name === 'GetCommand') {
        state.pks.add(String(command.input?.Key?.pk));
        if (out?.Item) state.get++;
      } else if (name === 'BatchGetCommand') {
        for (const list of Object.values(out?.Responses ?? {}) as any[][]) {
          state.batchGet += list.length;
          for (const item of list) state.pks.add(String(item.pk));
        }
      } else if (name === 'TransactWriteCommand') {
        state.transactWrites++;
        state.onWrite();
      }
      return out;
    },
  };
  return { state, db };
}

export async function runSweep(shared: Db, tableName: string): Promise<SweepResult> {
  const run = randomUUID().slice(0, 6);
  let nowMs = Date.now();
  const clock = () => new Date(nowMs);
  const store = createStore({ tableName: `${tableName}-sweep`, db: shared, now: clock });
  await ensureTable(store);
  await putService(store, dueService);
  await putService(store, idleService);
  process.stderr.write(`sweep: table ${store.tableName}, ${ACCOUNTS} accounts…\n`);
  const accounts = await makeAccounts(store, `sw-${run}`, ACCOUNTS, { parallel: CONCURRENCY });
  /** Hold per account of the idle sessions: what each account must still have reserved after the sweep. */
  const idleHeld = new Map<string, number>();
  const dueIds: string[] = [];
  const idleIds: string[] = [];

  const create = async (kind: 'due' | 'idle', count: number, seconds: number) => {
    const service = kind === 'due' ? dueService : idleService;
    const ids = kind === 'due' ? dueIds : idleIds;
    const phase = await runPhase<never>({
      label: `sweep: ${kind} sessions`, concurrency: CONCURRENCY, accounts: accounts.length, cycles: count, seconds, names: [],
      cycle: async (_worker, index) => {
        // Round-robin by index, so every account gets its share whatever the workers do.
        const accountId = accounts[index % accounts.length]!;
        const rid = `${run}-${kind}-${index}`;
        const r = await reserve(store, { requestId: rid, accountId, clientId: 'bench', serviceId: service.serviceId, requested: { units: 60 } }, rid);
        expectStatus('reserve', r, 201);
        ids.push(r.body.sessionId as string);
        if (kind === 'idle') idleHeld.set(accountId, (idleHeld.get(accountId) ?? 0) + ((r.body.granted as { amount: number }).amount));
      },
    });
    return { asked: count, created: ids.length, wallMs: phase.wallMs, stoppedByTime: phase.stoppedByTime, errors: phase.errors };
  };
  const due = await create('due', DUE_SESSIONS, CREATE_DUE_SECONDS);
  const idle = await create('idle', IDLE_SESSIONS, CREATE_IDLE_SECONDS);

  // The sweep, 90 s later by the store's clock, counted from here on.
  nowMs += SWEEP_AFTER_SECONDS * 1000;
  const calls = countingDb(shared);
  const reads = readCounter(calls);
  const sweepStore = { ...store, db: reads.db };
  const total: SweepSummary = { examined: 0, expired: 0, reportsRequested: 0, allotmentsReturned: 0, orphansReleased: 0, notDue: 0, gone: 0, backlog: 0 };
  const failures: string[] = [];
  const progress = createProgress('sweep: expiring', Math.max(1, due.created), SWEEP_SECONDS);
  reads.state.onWrite = () => progress.update(reads.state.transactWrites);
  let runs = 0;
  let stoppedByTime = false;
  const begin = performance.now();
  for (;;) {
    if (performance.now() - begin > SWEEP_SECONDS * 1000) { stoppedByTime = true; break; }
    runs++;
    let summary: SweepSummary | undefined;
    try {
      // As the handler runs it. Each expiry's session_expired goes out through the
      // notification relay (fed by the table's stream), which is not the sweep's work.
      summary = await sweep(sweepStore, { batchSize: BATCH_SIZE, maxBatches: MAX_BATCHES });
    } catch (error) {
      // A run that met a failing item still did the others; the item stays due for the next run.
      failures.push((error as any)?.code ?? (error as Error)?.name ?? 'Error');
      if (failures.length >= 5) break;
      continue;
    }
    for (const k of Object.keys(total) as Array<keyof SweepSummary>) if (k !== 'backlog') total[k] += summary[k];
    total.backlog = summary.backlog;
    if (summary.examined === 0) break;
  }
  const wallMs = performance.now() - begin;
  progress.finish(reads.state.transactWrites);

  // Checks, not counted: every due session expired, idle ones untouched and still holding.
  process.stderr.write('sweep: checking sessions and accounts…\n');
  const idleRead = idleIds.filter((id) => reads.state.pks.has(`SES#${id}`)).length;
  let dueLeftActive = 0;
  const dueSample = dueIds.filter((_, i) => i % Math.max(1, Math.floor(dueIds.length / 200)) === 0);
  for (const id of dueSample) if ((await getSessionItem(store, id))?.state !== 'expired') dueLeftActive++;
  const idleSample = idleIds.filter((_, i) => i % Math.max(1, Math.floor(idleIds.length / 200)) === 0);
  let idleSampleActive = 0;
  for (const id of idleSample) if ((await getSessionItem(store, id))?.state === 'active') idleSampleActive++;
  let reservedMismatches = 0;
  for (const accountId of accounts) {
    const account = await getAccountItem(store, accountId);
    if (account?.reserved !== (idleHeld.get(accountId) ?? 0)) reservedMismatches++;
  }
  return {
    accounts: accounts.length, due, idle, runs, summary: total, wallMs, stoppedByTime, failures, calls: new Map(calls.counts),
    itemsRead: { query: reads.state.query, get: reads.state.get, batchGet: reads.state.batchGet },
    idleRead, dueLeftActive, dueSampled: dueSample.length, idleSampled: idleSample.length, idleSampleActive, reservedMismatches,
    batchSize: BATCH_SIZE, maxBatches: MAX_BATCHES,
  };
}

const totalCalls = (r: SweepResult) => [...r.calls.values()].reduce((a, b) => a + b, 0);
const totalRead = (r: SweepResult) => r.itemsRead.query + r.itemsRead.get + r.itemsRead.batchGet;

export function sweepReport(r: SweepResult): string {
  const out: string[] = [];
  const expired = r.summary.expired;
  out.push(`Interim sweep: ${r.due.created} due sessions among ${r.idle.created} idle ones on ${r.accounts} accounts (own table, store clock moved ${SWEEP_AFTER_SECONDS} s on);`);
  out.push(`sweep(batchSize ${r.batchSize}, maxBatches ${r.maxBatches}) run until a run found nothing due: ${r.runs} run(s).`);
  out.push('');
  const created = (label: string, c: SweepResult['due']) => [label, `${c.created} of ${c.asked}`, fmt(c.wallMs / 1000, 1), fmt(c.created / (c.wallMs / 1000)), c.stoppedByTime ? 'time cap' : 'count', errorsText(c.errors)];
  out.push(table(['setup (reserve, c=32)', 'sessions', 'wall s', 'reserves/s', 'stopped by', 'errors'], [created('due sessions (validity 60 s)', r.due), created('idle sessions (validity 1 h)', r.idle)], 1));
  out.push('');
  const byCommand = [...r.calls].sort(([a], [b]) => a.localeCompare(b)).map(([c, n]) => `${c}×${n}`).join(' + ');
  const rows: string[][] = [
    ['wall time of the sweep', `${fmt(r.wallMs / 1000, 2)} s`, `for ${expired} expired${r.stoppedByTime ? ' (stopped by its time cap)' : ''}${r.failures.length ? `; failed runs: ${r.failures.join(', ')}` : ''}`],
    ['sessions expired per second', fmt(expired / (r.wallMs / 1000)), `examined ${r.summary.examined}, expired ${expired}, reports asked ${r.summary.reportsRequested}, not due ${r.summary.notDue}, gone ${r.summary.gone}, backlog ${r.summary.backlog}`],
    ['items read per swept session', fmt(totalRead(r) / expired, 2), `${totalRead(r)} items: Query ${r.itemsRead.query}, GetItem ${r.itemsRead.get}, BatchGetItem ${r.itemsRead.batchGet}`],
    ['DynamoDB calls per swept session', fmt(totalCalls(r) / expired, 2), `${totalCalls(r)} calls: ${byCommand || '-'}`],
    ['idle sessions read', String(r.idleRead), `of ${r.idle.created} (returned by a Query or fetched by a GetItem)`],
    ['due sessions not expired (sample)', `${r.dueLeftActive} of ${r.dueSampled}`, 'sampled after the sweep'],
    ['idle sessions still active (sample)', `${r.idleSampleActive} of ${r.idleSampled}`, 'sampled after the sweep'],
    ['accounts whose reserved ≠ their idle holds', String(r.reservedMismatches), `of ${r.accounts}: expired holds went back, idle ones stayed`],
  ];
  out.push(table(['sweep', 'value', 'detail'], rows, 1));
  out.push('');
  return out.join('\n');
}

export function sweepTargets(r: SweepResult): TargetRow[] {
  const expired = r.summary.expired;
  return [
    [`sweep: every due session expired (${r.due.created})`, String(expired), `in ${fmt(r.wallMs / 1000, 2)} s, ${fmt(expired / (r.wallMs / 1000))} sessions/s; ${r.dueLeftActive} of a sample left unexpired`,
      passMiss(expired === r.due.created && r.dueLeftActive === 0 && r.summary.backlog === 0)],
    ['sweep: idle sessions read (target 0)', String(r.idleRead), `of ${r.idle.created} idle; ${r.idleSampleActive}/${r.idleSampled} sampled still active`, passMiss(r.idleRead === 0 && r.idleSampleActive === r.idleSampled)],
    ['sweep: reservations of expired sessions returned, idle ones kept', String(r.reservedMismatches), `accounts off of ${r.accounts}`, passMiss(r.reservedMismatches === 0)],
  ];
}
