// Benchmark of the charging hot path (reserve → update → debit) against DynamoDB Local,
// next to a raw baseline of one conditional UpdateItem per step on the same server.
//
//   npm run bench
//
// Knobs (environment): BENCH_C1_CYCLES, BENCH_C32_CYCLES, BENCH_HOT_CYCLES,
// BENCH_RAW_C1_CYCLES, BENCH_RAW_C32_CYCLES, BENCH_OURS_HALF_SECONDS, BENCH_RAW_HALF_SECONDS,
// BENCH_WARMUP_ROUNDS (time caps: see below).
// Progress goes to stderr; the results table goes to stdout.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { startDynamoDbLocal, type DynamoDbLocal } from '../infra/local/dynamodb.js';
import { countingDb, createStore, ensureTable, type Db, type Store } from '../functions/store/db.js';
import { putService } from '../functions/store/services.js';
import { createAccount, getAccountItem, topUp } from '../functions/store/accounts.js';
import { key } from '../functions/store/table.js';
import { reserve, updateSession, debitSession } from '../functions/store/sessions.js';
import { createProgress } from './progress.js';
import { summarize, type Sample } from './stats.js';

const envNum = (name: string, fallback: number) => {
  const value = Number(process.env[name]);
  return process.env[name] && Number.isFinite(value) && value > 0 ? value : fallback;
};
const envInt = (name: string, fallback: number) => Math.floor(envNum(name, fallback));

const CONCURRENCY = 32;
const C1_CYCLES = envInt('BENCH_C1_CYCLES', 1_500);
const C32_CYCLES = envInt('BENCH_C32_CYCLES', 6_000);
const HOT_CYCLES = envInt('BENCH_HOT_CYCLES', 6_000);
const RAW_C1_CYCLES = envInt('BENCH_RAW_C1_CYCLES', 1_500);
const RAW_C32_CYCLES = envInt('BENCH_RAW_C32_CYCLES', 6_000);
/**
 * Each measured phase runs as two halves in the order ours, raw, raw, ours (ABBA), so the
 * JIT of DynamoDB Local still warming up favours neither side. A half stops at half its
 * cycle count or at its time cap, whichever comes first.
 */
const OURS_HALF_SECONDS = envNum('BENCH_OURS_HALF_SECONDS', 7);
const RAW_HALF_SECONDS = envNum('BENCH_RAW_HALF_SECONDS', 4);
const WARMUP_ROUNDS = envInt('BENCH_WARMUP_ROUNDS', 3);
const WARMUP_OURS_SECONDS = envNum('BENCH_WARMUP_OURS_SECONDS', 3);
const WARMUP_RAW_SECONDS = envNum('BENCH_WARMUP_RAW_SECONDS', 1.5);
const TOPUP_MINOR = 1_000_000_000;

const voice = { serviceId: 'voice', unit: 'seconds' as const, price: { amountMinor: 2, perUnits: 60 }, validitySeconds: 300, interimIntervalSeconds: 30 };

type OpName = 'reserve' | 'update' | 'debit';
type RawName = 'step1' | 'step2' | 'step3';

interface PhaseResult<N extends string> {
  label: string;
  concurrency: number;
  accounts: number;
  cycles: number;
  wallMs: number;
  stoppedByTime: boolean;
  samples: Record<N, Sample[]>;
  errors: Map<string, number>;
}

// ------------------------------------------------------------------------------- runner

/**
 * Runs `cycle` from `concurrency` workers until `cycles` cycles have started or the time
 * cap passes. Each worker w gets its own index sequence; a cycle that throws is counted
 * as an error by name and the worker goes on.
 */
async function runPhase<N extends string>(options: {
  label: string;
  concurrency: number;
  accounts: number;
  cycles: number;
  seconds: number;
  names: readonly N[];
  cycle: (worker: number, index: number, record: (name: N, sample: Sample) => void) => Promise<void>;
}): Promise<PhaseResult<N>> {
  const samples = Object.fromEntries(options.names.map((n) => [n, [] as Sample[]])) as Record<N, Sample[]>;
  const errors = new Map<string, number>();
  const deadline = performance.now() + options.seconds * 1000;
  let started = 0;
  let done = 0;
  let stoppedByTime = false;
  const progress = createProgress(options.label, options.cycles, options.seconds);
  const record = (name: N, sample: Sample) => samples[name].push(sample);
  const begin = performance.now();
  const worker = async (w: number) => {
    for (;;) {
      if (started >= options.cycles) return;
      if (performance.now() >= deadline) { stoppedByTime = true; return; }
      const index = started++;
      try {
        await options.cycle(w, index, record);
      } catch (error) {
        const name = (error as any)?.code ?? (error as Error)?.name ?? 'Error';
        errors.set(name, (errors.get(name) ?? 0) + 1);
        if (errors.size === 1 && errors.get(name) === 1) {
          process.stderr.write(`\n[${options.label}] first error: ${(error as Error)?.message ?? String(error)}\n`);
        }
      }
      done++;
      progress.update(done);
    }
  };
  try {
    await Promise.all(Array.from({ length: options.concurrency }, (_, w) => worker(w)));
  } finally {
    progress.finish(done);
  }
  return {
    label: options.label,
    concurrency: options.concurrency,
    accounts: options.accounts,
    cycles: done,
    wallMs: performance.now() - begin,
    stoppedByTime,
    samples,
    errors,
  };
}

/** The two halves of an ABBA-ordered phase as one result. */
function merge<N extends string>(a: PhaseResult<N>, b: PhaseResult<N>): PhaseResult<N> {
  const samples = Object.fromEntries(Object.keys(a.samples).map((n) => [n, [...a.samples[n as N], ...b.samples[n as N]]])) as Record<N, Sample[]>;
  const errors = new Map(a.errors);
  for (const [name, n] of b.errors) errors.set(name, (errors.get(name) ?? 0) + n);
  return {
    label: a.label,
    concurrency: a.concurrency,
    accounts: a.accounts,
    cycles: a.cycles + b.cycles,
    wallMs: a.wallMs + b.wallMs,
    stoppedByTime: a.stoppedByTime || b.stoppedByTime,
    samples,
    errors,
  };
}

/** Times one call and counts its DynamoDB calls through a counting wrapper of its own. */
async function timed<T>(shared: Db, base: Store, run: (store: Store) => Promise<T>): Promise<{ value: T; sample: Sample }> {
  const db = countingDb(shared);
  const store: Store = { ...base, db };
  const t0 = performance.now();
  const value = await run(store);
  const ms = performance.now() - t0;
  return { value, sample: { ms, calls: db.total(), byCommand: Object.fromEntries(db.counts) } };
}

class OpFailed extends Error {
  constructor(public code: string, message: string) { super(message); }
}

function expectStatus(op: string, answer: { status: number; body: Record<string, unknown> }, status: number) {
  if (answer.status !== status) throw new OpFailed(`${op}:${answer.status}`, `${op} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
}

// --------------------------------------------------------------------------------- setup

async function makeAccounts(store: Store, prefix: string, count: number): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  // A few at a time: setup is not what is measured.
  for (let i = 0; i < ids.length; i += 8) {
    await Promise.all(ids.slice(i, i + 8).map(async (accountId) => {
      await createAccount(store, { accountId, currency: 'EUR', kind: 'prepaid' });
      await topUp(store, accountId, `topup-${accountId}-${randomUUID()}`, TOPUP_MINOR, randomUUID());
    }));
  }
  return ids;
}

function oursPhase(shared: Db, base: Store, label: string, concurrency: number, cycles: number, seconds: number, accounts: string[]) {
  const run = randomUUID().slice(0, 6);
  return runPhase<OpName>({
    label, concurrency, cycles, seconds, accounts: accounts.length, names: ['reserve', 'update', 'debit'] as const,
    cycle: async (worker, index, record) => {
      const accountId = accounts[worker % accounts.length]!;
      const rid = `${run}-${worker}-${index}`;
      const r = await timed(shared, base, (store) => reserve(store, {
        requestId: `${rid}-r`, accountId, clientId: 'bench', serviceId: voice.serviceId, requested: { units: 600 },
      }, `${rid}-r`));
      expectStatus('reserve', r.value, 201);
      record('reserve', r.sample);
      const sessionId = r.value.body.sessionId as string;
      const u = await timed(shared, base, (store) => updateSession(store, sessionId, { requestId: `${rid}-u`, usedUnits: 90, requested: { units: 600 } }, `${rid}-u`));
      expectStatus('update', u.value, 200);
      record('update', u.sample);
      const d = await timed(shared, base, (store) => debitSession(store, sessionId, { requestId: `${rid}-d`, usedUnits: 30 }, `${rid}-d`));
      expectStatus('debit', d.value, 200);
      record('debit', d.sample);
    },
  });
}

function rawPhase(shared: Db, tableName: string, label: string, concurrency: number, cycles: number, seconds: number, accounts: string[]) {
  const step = async (accountId: string, amount: number): Promise<Sample> => {
    const t0 = performance.now();
    await shared.send(new UpdateCommand({
      TableName: tableName,
      Key: key.account(accountId),
      UpdateExpression: 'SET balance = balance - :a, available = available - :a',
      ConditionExpression: 'balance >= :a',
      ExpressionAttributeValues: { ':a': amount },
    }));
    return { ms: performance.now() - t0, calls: 1, byCommand: { Update: 1 } };
  };
  return runPhase<RawName>({
    label, concurrency, cycles, seconds, accounts: accounts.length, names: ['step1', 'step2', 'step3'] as const,
    cycle: async (worker, _index, record) => {
      const accountId = accounts[worker % accounts.length]!;
      record('step1', await step(accountId, 20));
      record('step2', await step(accountId, 4));
      record('step3', await step(accountId, 1));
    },
  });
}

// ------------------------------------------------------------------------------- report

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
const pad = (s: string, width: number) => (s.length >= width ? s : ' '.repeat(width - s.length) + s);
const padEnd = (s: string, width: number) => (s.length >= width ? s : s + ' '.repeat(width - s.length));

function table(headers: string[], rows: string[][], leftColumns = 1): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < leftColumns ? padEnd(c, widths[i]!) : pad(c, widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function errorsText(errors: Map<string, number>): string {
  return errors.size === 0 ? '0' : [...errors].map(([name, n]) => `${n} ${name}`).join(', ');
}

/** The most frequent mix of commands of an operation type, and how often it occurred. */
function commonBreakdown(samples: Sample[]): string {
  const tally = new Map<string, number>();
  for (const s of samples) {
    const text = Object.entries(s.byCommand).sort(([a], [b]) => a.localeCompare(b)).map(([c, n]) => `${c}×${n}`).join('+');
    tally.set(text, (tally.get(text) ?? 0) + 1);
  }
  const [text, n] = [...tally].sort((a, b) => b[1] - a[1])[0] ?? ['-', 0];
  return `${text} (${samples.length ? Math.round((100 * n) / samples.length) : 0}%)`;
}

function sumCounts(p: PhaseResult<string>): number {
  return Object.values(p.samples).reduce((sum, list) => sum + (list as Sample[]).length, 0);
}

interface AccountSize {
  bytes: number;
  opsEntries: number;
}

interface Pair {
  scenario: string;
  ours: PhaseResult<OpName>;
  raw: PhaseResult<RawName>;
  /** The largest account item of our phase, after it. */
  oursAccount: AccountSize;
}

function report(pairs: Pair[], setup: string): string {
  const out: string[] = [];
  out.push('');
  out.push(`Charging benchmark: reserve → update → debit vs raw conditional UpdateItem, ${setup}`);
  out.push(`node ${process.version}, ${cpus().length} CPU(s). Each scenario ran as ours/raw/raw/ours halves (ABBA) after a warm-up;`);
  out.push('ops/s = successful ops of that type / wall time of the phase; latencies are per operation, client side.');
  out.push('');

  const rows: string[][] = [];
  for (const { scenario, ours, raw } of pairs) {
    for (const [impl, phase, names] of [['ours', ours, ['reserve', 'update', 'debit']], ['raw', raw, ['step1', 'step2', 'step3']]] as const) {
      const wallS = phase.wallMs / 1000;
      for (const name of names) {
        const list = (phase.samples as Record<string, Sample[]>)[name]!;
        const s = summarize(list);
        rows.push([scenario, impl, name, String(s.count), fmt(s.count / wallS), fmt(s.p50, 2), fmt(s.p99, 2), fmt(s.callsMedian, 0), fmt(s.callsMean, 2), commonBreakdown(list)]);
      }
    }
  }
  out.push('Per operation');
  out.push(table(['scenario', 'impl', 'op', 'count', 'ops/s', 'p50 ms', 'p99 ms', 'calls p50', 'calls mean', 'most common DynamoDB calls'], rows, 3));
  out.push('');

  const phaseRows = pairs.flatMap(({ scenario, ours, raw, oursAccount }) => [ours, raw].map((p) => [
    scenario, p === ours ? 'ours' : 'raw', String(p.concurrency), String(p.accounts), String(p.cycles), fmt(p.wallMs / 1000, 2),
    fmt(p.cycles / (p.wallMs / 1000)), fmt(sumCounts(p) / (p.wallMs / 1000)), p.stoppedByTime ? 'time cap' : 'count', errorsText(p.errors),
    p === ours ? `${fmt(oursAccount.bytes / 1024)} KB, ${oursAccount.opsEntries} ops` : '-',
  ]));
  out.push('Per phase');
  out.push(table(['scenario', 'impl', 'conc', 'accounts', 'cycles', 'wall s', 'cycles/s', 'ops/s', 'stopped by', 'errors', 'largest account item after (JSON size, ops entries)'], phaseRows, 2));
  out.push('');

  const ratios = pairs.map(({ scenario, ours, raw }) => {
    const oursOps = sumCounts(ours) / (ours.wallMs / 1000);
    const rawOps = sumCounts(raw) / (raw.wallMs / 1000);
    return { scenario, oursOps, rawOps, ratio: oursOps / rawOps };
  });

  const allCalls = pairs.flatMap((p) => (['reserve', 'update', 'debit'] as const).flatMap((n) => p.ours.samples[n].map((x) => x.calls)));
  const targetRows: string[][] = [];
  const callsRow = (label: string, values: number[]) => {
    const s = summarize(values.map((calls) => ({ ms: 0, calls, byCommand: {} })));
    targetRows.push([label, fmt(s.callsMedian, 0), `mean ${fmt(s.callsMean, 2)}`, s.count ? (s.callsMedian <= 2 ? 'PASS' : 'MISS') : '-']);
  };
  callsRow('median DynamoDB calls per charging operation (target ≤ 2)', allCalls);
  for (const name of ['reserve', 'update', 'debit'] as const) {
    callsRow(`  … per ${name}`, pairs.flatMap((p) => p.ours.samples[name].map((x) => x.calls)));
  }
  for (const r of ratios) {
    targetRows.push([`throughput ratio ours/raw (target ≥ 0.5), ${r.scenario}`, fmt(r.ratio, 3), `${fmt(r.oursOps)} / ${fmt(r.rawOps)} ops/s`, r.ratio >= 0.5 ? 'PASS' : 'MISS']);
  }
  out.push('Targets');
  out.push(table(['target', 'value', 'detail', 'result'], targetRows, 1));

  out.push('');
  return out.join('\n');
}

// --------------------------------------------------------------------------------- main

/** Approximate stored size of an account item (attribute names + JSON of the values). */
async function accountSize(store: Store, accountIds: string[]): Promise<AccountSize> {
  let largest: AccountSize = { bytes: 0, opsEntries: 0 };
  for (const accountId of accountIds) {
    const item = await getAccountItem(store, accountId);
    if (!item) continue;
    const bytes = Buffer.byteLength(JSON.stringify(item));
    if (bytes > largest.bytes) largest = { bytes, opsEntries: Object.keys(item.ops ?? {}).length };
  }
  return largest;
}

async function main() {
  let dynamodb: DynamoDbLocal | undefined;
  const cleanup = async () => { const d = dynamodb; dynamodb = undefined; await d?.stop(); };
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`\n${signal}: stopping DynamoDB Local\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const began = performance.now();
  try {
    process.stderr.write('starting DynamoDB Local (in-memory)…\n');
    dynamodb = await startDynamoDbLocal({});
    const tableName = `bench-${randomUUID().slice(0, 8)}`;
    const base = createStore({ tableName, endpoint: dynamodb.endpoint });
    const shared = base.db;
    await ensureTable(base);
    await putService(base, voice);
    process.stderr.write(`table ${tableName}; creating and topping up accounts…\n`);
    // Fresh accounts per scenario and side: an account item keeps one ops entry per
    // session it has seen, so no phase inherits another's item size.
    const accounts = {
      warmOurs: await makeAccounts(base, 'warm-ours', CONCURRENCY),
      warmRaw: await makeAccounts(base, 'warm-raw', CONCURRENCY),
      c1Ours: await makeAccounts(base, 'c1-ours', 1),
      c1Raw: await makeAccounts(base, 'c1-raw', 1),
      multiOurs: await makeAccounts(base, 'c32-ours', CONCURRENCY),
      multiRaw: await makeAccounts(base, 'c32-raw', CONCURRENCY),
      hotOurs: await makeAccounts(base, 'hot-ours', 1),
      hotRaw: await makeAccounts(base, 'hot-raw', 1),
    };

    // Warm-up (JIT of DynamoDB Local and of node), alternating both sides; not reported.
    for (let round = 1; round <= WARMUP_ROUNDS; round++) {
      await oursPhase(shared, base, `warm-up ours ${round}/${WARMUP_ROUNDS}`, CONCURRENCY, 100_000, WARMUP_OURS_SECONDS, accounts.warmOurs);
      await rawPhase(shared, tableName, `warm-up raw ${round}/${WARMUP_ROUNDS}`, CONCURRENCY, 100_000, WARMUP_RAW_SECONDS, accounts.warmRaw);
    }

    const pairs: Pair[] = [];
    const scenario = async (name: string, tag: string, concurrency: number, oursCycles: number, rawCycles: number, oursAccounts: string[], rawAccounts: string[]) => {
      const half = (n: number) => Math.max(1, Math.ceil(n / 2));
      const oursA = await oursPhase(shared, base, `ours ${tag} 1/2`, concurrency, half(oursCycles), OURS_HALF_SECONDS, oursAccounts);
      const rawA = await rawPhase(shared, tableName, `raw  ${tag} 1/2`, concurrency, half(rawCycles), RAW_HALF_SECONDS, rawAccounts);
      const rawB = await rawPhase(shared, tableName, `raw  ${tag} 2/2`, concurrency, half(rawCycles), RAW_HALF_SECONDS, rawAccounts);
      const oursB = await oursPhase(shared, base, `ours ${tag} 2/2`, concurrency, half(oursCycles), OURS_HALF_SECONDS, oursAccounts);
      pairs.push({ scenario: name, ours: merge(oursA, oursB), raw: merge(rawA, rawB), oursAccount: await accountSize(base, oursAccounts) });
    };
    await scenario('c=1, 1 account', 'c=1', 1, C1_CYCLES, RAW_C1_CYCLES, accounts.c1Ours, accounts.c1Raw);
    await scenario(`c=32, ${CONCURRENCY} accounts`, 'c=32', CONCURRENCY, C32_CYCLES, RAW_C32_CYCLES, accounts.multiOurs, accounts.multiRaw);
    await scenario('c=32, 1 hot account', 'c=32 hot', CONCURRENCY, HOT_CYCLES, RAW_C32_CYCLES, accounts.hotOurs, accounts.hotRaw);

    const setup = `DynamoDB Local in-memory at ${dynamodb.endpoint}, table ${tableName}; whole run ${fmt((performance.now() - began) / 1000, 0)} s`;
    process.stdout.write(report(pairs, setup) + '\n');
  } finally {
    process.stderr.write('stopping DynamoDB Local…\n');
    await cleanup();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    process.stderr.write(`bench failed: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  },
);
