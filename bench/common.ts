// What every phase of `npm run bench` shares: knobs, the phase runner (workers, time cap,
// progress bar), the per-call timer with its counting db, account setup and the table
// formatting of the report.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { countingDb, type Db, type Store } from '../functions/store/db.js';
import { createAccount, topUp } from '../functions/store/accounts.js';
import { createProgress } from './progress.js';
import type { Sample } from './stats.js';

export const envNum = (name: string, fallback: number) => {
  const value = Number(process.env[name]);
  return process.env[name] && Number.isFinite(value) && value > 0 ? value : fallback;
};
export const envInt = (name: string, fallback: number) => Math.floor(envNum(name, fallback));

export const CONCURRENCY = 32;
export const TOPUP_MINOR = 1_000_000_000;

export const voice = { serviceId: 'voice', unit: 'seconds' as const, price: { amountMinor: 2, perUnits: 60 }, validitySeconds: 300, interimIntervalSeconds: 30 };

export interface PhaseResult<N extends string> {
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
export async function runPhase<N extends string>(options: {
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
export function merge<N extends string>(a: PhaseResult<N>, b: PhaseResult<N>): PhaseResult<N> {
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
export async function timed<T>(shared: Db, base: Store, run: (store: Store) => Promise<T>): Promise<{ value: T; sample: Sample }> {
  const db = countingDb(shared);
  const store: Store = { ...base, db };
  const t0 = performance.now();
  const value = await run(store);
  const ms = performance.now() - t0;
  return { value, sample: { ms, calls: db.total(), byCommand: Object.fromEntries(db.counts) } };
}

export class OpFailed extends Error {
  constructor(public code: string, message: string) { super(message); }
}

export function expectStatus(op: string, answer: { status: number; body: Record<string, unknown> }, status: number) {
  if (answer.status !== status) throw new OpFailed(`${op}:${answer.status}`, `${op} answered ${answer.status}: ${JSON.stringify(answer.body)}`);
}

/** Runs `items` through `run`, `parallel` at a time (setup: not measured). */
export async function inBatches<T>(items: T[], parallel: number, run: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += parallel) await Promise.all(items.slice(i, i + parallel).map(run));
}

// --------------------------------------------------------------------------------- setup

/**
 * `count` accounts named `<prefix>-<i>`, each topped up with `topUpMinor` (0: none, as for
 * attached accounts, which draw on their main account).
 */
export async function makeAccounts(store: Store, prefix: string, count: number, options: { mainAccountId?: string; topUpMinor?: number; parallel?: number } = {}): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
  const amount = options.topUpMinor ?? TOPUP_MINOR;
  // A few at a time: setup is not what is measured.
  await inBatches(ids, options.parallel ?? 8, async (accountId) => {
    await createAccount(store, { accountId, currency: 'EUR', kind: 'prepaid', ...(options.mainAccountId ? { mainAccountId: options.mainAccountId } : {}) });
    if (amount > 0) await topUp(store, accountId, `topup-${accountId}-${randomUUID()}`, amount, randomUUID());
  });
  return ids;
}

// ------------------------------------------------------------------------------- report

export const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
const pad = (s: string, width: number) => (s.length >= width ? s : ' '.repeat(width - s.length) + s);
const padEnd = (s: string, width: number) => (s.length >= width ? s : s + ' '.repeat(width - s.length));

export function table(headers: string[], rows: string[][], leftColumns = 1): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < leftColumns ? padEnd(c, widths[i]!) : pad(c, widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function errorsText(errors: Map<string, number>): string {
  return errors.size === 0 ? '0' : [...errors].map(([name, n]) => `${n} ${name}`).join(', ');
}

/** The most frequent mix of commands of an operation type, and how often it occurred. */
export function commonBreakdown(samples: Sample[]): string {
  const tally = new Map<string, number>();
  for (const s of samples) {
    const text = Object.entries(s.byCommand).sort(([a], [b]) => a.localeCompare(b)).map(([c, n]) => `${c}×${n}`).join('+');
    tally.set(text, (tally.get(text) ?? 0) + 1);
  }
  const [text, n] = [...tally].sort((a, b) => b[1] - a[1])[0] ?? ['-', 0];
  return `${text} (${samples.length ? Math.round((100 * n) / samples.length) : 0}%)`;
}

export function sumCounts(p: PhaseResult<string>): number {
  return Object.values(p.samples).reduce((sum, list) => sum + (list as Sample[]).length, 0);
}

/** A row of the final Targets table: what, the figure, how it was obtained, PASS/MISS/-. */
export type TargetRow = [target: string, value: string, detail: string, result: string];

export const passMiss = (ok: boolean | undefined) => (ok === undefined ? '-' : ok ? 'PASS' : 'MISS');
