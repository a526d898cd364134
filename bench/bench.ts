// `npm run bench`: figures of the whole charging API against DynamoDB Local (in-memory,
// started here), in one run. Store functions are called directly, as the handlers call them,
// each through a counting db wrapper (calls per operation, by command). In order:
//
//  1. The charging hot path (reserve → update → debit) at c=1 and c=32 (32 accounts, and one
//     hot account), next to a raw baseline of one conditional UpdateItem per step on the
//     same server: ops/s, latencies, calls per operation, throughput ratio ours/raw.
//  2. Every other operation at c=32 (bench/operations.ts): refunds (of a closed session with
//     an amount; of an active one without, which releases it), event charges, top-ups, manual
//     service-account recharges, a session on a service account, a multi-party session
//     (propose → agree → agree → debit), a session of an attached account.
//  3. The hot shared account (bench/hot-account.ts): 50 members of one main account charging
//     at once; main-account item writes per 100 member operations, from cold and sustained.
//  4. The interim sweep (bench/sweep.ts): 10,000 due sessions among more idle ones; wall
//     time, sessions expired per second, items read and calls per swept session, and a check
//     that no idle session was read.
//  5. What DynamoDB Local charges per call shape (bench/call-costs.ts): GetItem, a 2-item
//     TransactGetItems, a conditional UpdateItem, 3- and 4-item TransactWriteItems, at c=32,
//     and the ratio ours/raw those costs alone predict for a quiet account's cycle.
//  Then one Targets table with every target, PASS/MISS.
//
//   npm run bench                     (about 7 minutes on 2 cores)
//   BENCH_SWEEP_SESSIONS=500 BENCH_OPS_SECONDS=2 … npm run bench     (a quick look)
//
// Knobs (environment; counts, and time caps in seconds — a phase stops at whichever comes first):
//  1. BENCH_C1_CYCLES (1500), BENCH_C32_CYCLES (6000), BENCH_HOT_CYCLES (6000),
//     BENCH_RAW_C1_CYCLES (1500), BENCH_RAW_C32_CYCLES (6000), BENCH_OURS_HALF_SECONDS (7),
//     BENCH_RAW_HALF_SECONDS (4), BENCH_WARMUP_ROUNDS (3), BENCH_WARMUP_OURS_SECONDS (3),
//     BENCH_WARMUP_RAW_SECONDS (1.5) (see below).
//  2. BENCH_OPS_CYCLES (1000 cycles per operation; a cycle is one operation, or one session
//     of 3–4), BENCH_OPS_SECONDS (6, cap of each measured phase), BENCH_OPS_PREPARE_SECONDS
//     (8, cap of making the sessions the refunds need), BENCH_OPS_ACCOUNTS (32 per operation).
//  3. BENCH_MEMBERS (50), BENCH_MEMBER_COLD_SESSIONS (2), BENCH_MEMBER_SUSTAINED_SESSIONS (8),
//     BENCH_MEMBER_EVENTS (event charges per member session, 1; 'none' for none). Not time-capped.
//  4. BENCH_SWEEP_SESSIONS (10000 due), BENCH_SWEEP_IDLE_SESSIONS (12000 idle),
//     BENCH_SWEEP_ACCOUNTS (400), BENCH_SWEEP_CREATE_DUE_SECONDS (90),
//     BENCH_SWEEP_CREATE_IDLE_SECONDS (90), BENCH_SWEEP_SECONDS (150, cap of the sweep runs);
//     SWEEP_BATCH_SIZE (100) and SWEEP_MAX_BATCHES (50) as the interim-sweep handler reads them.
//  5. BENCH_CALLS_SECONDS (2 per shape), BENCH_CALLS_PER_SHAPE (3000).
//  BENCH_SKIP=operations,hot,sweep,calls (any of them) leaves phases out.
// Progress goes to stderr; the report goes to stdout.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

import { randomUUID } from 'node:crypto';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { startDynamoDbLocal, type DynamoDbLocal } from '../infra/local/dynamodb.js';
import { createStore, ensureTable, type Db, type Store } from '../functions/store/db.js';
import { putService } from '../functions/store/services.js';
import { getAccountItem } from '../functions/store/accounts.js';
import { key } from '../functions/store/table.js';
import { reserve, updateSession, debitSession } from '../functions/store/sessions.js';
import { summarize, type Sample } from './stats.js';
import {
  CONCURRENCY, commonBreakdown, envInt, envNum, errorsText, expectStatus, fmt, makeAccounts, merge, passMiss, runPhase,
  sumCounts, table, timed, voice, type PhaseResult, type TargetRow,
} from './common.js';
import { operationsReport, runOperations, type OperationResult } from './operations.js';
import { hotAccountReport, hotAccountTargets, runHotAccount, type HotAccountResult } from './hot-account.js';
import { runSweep, sweepReport, sweepTargets, type SweepResult } from './sweep.js';
import { callCostsReport, runCallCosts, type CallCostResult } from './call-costs.js';

const SKIP = new Set((process.env.BENCH_SKIP ?? '').split(',').map((x) => x.trim()).filter(Boolean));

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
/** The throughput of our charging path over the raw conditional-write baseline. */
const RATIO_TARGET = 0.8;

type OpName = 'reserve' | 'update' | 'debit';
type RawName = 'step1' | 'step2' | 'step3';

// ------------------------------------------------------------------------------- phases

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

function chargingReport(pairs: Pair[], setup: string): string {
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
  return out.join('\n');
}

function chargingTargets(pairs: Pair[]): TargetRow[] {
  const ratios = pairs.map(({ scenario, ours, raw }) => {
    const oursOps = sumCounts(ours) / (ours.wallMs / 1000);
    const rawOps = sumCounts(raw) / (raw.wallMs / 1000);
    return { scenario, oursOps, rawOps, ratio: oursOps / rawOps };
  });

  const allCalls = pairs.flatMap((p) => (['reserve', 'update', 'debit'] as const).flatMap((n) => p.ours.samples[n].map((x) => x.calls)));
  const targetRows: TargetRow[] = [];
  const callsRow = (label: string, values: number[]) => {
    const s = summarize(values.map((calls) => ({ ms: 0, calls, byCommand: {} })));
    targetRows.push([label, fmt(s.callsMedian, 0), `mean ${fmt(s.callsMean, 2)}`, passMiss(s.count ? s.callsMedian <= 2 : undefined)]);
  };
  callsRow('median DynamoDB calls per charging operation (target ≤ 2)', allCalls);
  for (const name of ['reserve', 'update', 'debit'] as const) {
    callsRow(`  … per ${name}`, pairs.flatMap((p) => p.ours.samples[name].map((x) => x.calls)));
  }
  for (const r of ratios) {
    targetRows.push([`throughput ratio ours/raw (target ≥ ${RATIO_TARGET}), ${r.scenario}`, fmt(r.ratio, 3), `${fmt(r.oursOps)} / ${fmt(r.rawOps)} ops/s`, passMiss(Number.isFinite(r.ratio) ? r.ratio >= RATIO_TARGET : undefined)]);
  }
  return targetRows;
}

function targetsReport(rows: TargetRow[]): string {
  return ['Targets', table(['target', 'value', 'detail', 'result'], rows, 1), ''].join('\n');
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

    const charging = chargingReport(pairs, `DynamoDB Local in-memory at ${dynamodb.endpoint}, table ${tableName}; these phases ${fmt((performance.now() - began) / 1000, 0)} s`);

    let operations: OperationResult[] | undefined;
    if (!SKIP.has('operations')) {
      process.stderr.write('every other operation at c=32…\n');
      operations = await runOperations(shared, base);
    }
    let hot: HotAccountResult | undefined;
    if (!SKIP.has('hot')) hot = await runHotAccount(shared, base);
    let swept: SweepResult | undefined;
    if (!SKIP.has('sweep')) swept = await runSweep(shared, tableName);
    let callCosts: CallCostResult | undefined;
    if (!SKIP.has('calls')) callCosts = await runCallCosts(shared, tableName);

    const sections = [charging];
    if (operations) sections.push(operationsReport(operations));
    if (hot) sections.push(hotAccountReport(hot));
    if (swept) sections.push(sweepReport(swept));
    if (callCosts) sections.push(callCostsReport(callCosts));
    sections.push(targetsReport([
      ...chargingTargets(pairs),
      ...(hot ? hotAccountTargets(hot) : []),
      ...(swept ? sweepTargets(swept) : []),
    ]));
    sections.push(`whole run ${fmt((performance.now() - began) / 1000, 0)} s${SKIP.size ? ` (skipped: ${[...SKIP].join(', ')})` : ''}\n`);
    process.stdout.write(sections.join('\n') + '\n');
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
