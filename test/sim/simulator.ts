// A seeded workload simulator for the charging API, run through the REAL Lambda handlers
// (infra/local/api-gateway.ts `dispatch`) over DynamoDB Local, with faults injected at the
// one DynamoDB boundary and an auditor that keeps its own model of the money.
//
//   simulate({ seed, ops, clients, endpoint, log })  → SimulationResult
//   simulateAndShrink(...)                           → the result plus the smallest failing prefix
//
// How it works
// - Virtual clients (Diameter-like) each own their sessions and run one operation at a time
//   from their own PRNG stream (seed, client index). On a 5xx or a thrown error a client
//   retries the SAME request (same requestId, same body) up to `maxAttempts` times; faults
//   are injected only in the first FAULTY_ATTEMPTS attempts, so a request that still ends
//   in a 5xx is a bug (check e). A client may give up after a 5xx: the request is then
//   "in doubt" and the system must finish it by roll-forward or sweep.
// - The run is cut into epochs of `auditEvery` operations. At the end of each epoch all
//   clients stop, every in-flight db call drains, and the auditor checks the table against
//   its model (money conservation, ledger vs account, floors). Cheap checks (answer shape
//   and arithmetic, idempotent replays, the touched account's own invariants) run after
//   every operation.
// - At the end: faults off, in-doubt top-ups and refunds retried, the clock moved past every
//   validity, the sweep run until it expires nothing more, in-doubt session steps retried
//   (they must answer their stored answer or session_closed), then a final exact audit.
import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { BatchGetCommand, GetCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { createStore, documentClient, ensureTable } from '../../functions/store/db.js';
import { apiToken } from '../../functions/config.js';
import { sessionIdFor } from '../../functions/store/sessions.js';
import { Rng, splitmix32 } from './prng.js';
import { drawPlan, type FaultPlan } from './faults.js';
import { DirectDb, LambdaRuntime, ProcessRuntime, type DbClient, type Runtime, type RuntimeStats } from './runtime.js';

// ------------------------------------------------------------------------------ options

export interface SimulateOptions {
  seed: number;
  ops: number;
  clients?: number;
  /** DynamoDB (Local) endpoint. */
  endpoint: string;
  log?: (line: string) => void;
  /** Inject faults at the db boundary (default true). */
  faults?: boolean;
  /**
   * Leave out the workload that triggers the bugs listed in KNOWN_BUGS (default false: the
   * simulator goes looking for them). Tests that must pass on the current code set it.
   */
  avoidKnownBugs?: boolean;
  /** Full audit (every account, ledger, model) after this many operations; default adapts to `ops`. */
  auditEvery?: number;
  /** Attempts per request before the client stops retrying (default 6). */
  maxAttempts?: number;
  /** Chance that one attempt of a request gets a fault (default 0.12). */
  faultRate?: number;
  /**
   * The store's clock: 'realistic' (default with avoidKnownBugs) moves 1 ms at every read, so
   * no two requests share a timestamp; 'frozen' (default otherwise) moves only between
   * operations, so concurrent requests read the same millisecond.
   */
  clock?: 'realistic' | 'frozen';
  /**
   * 'lambda' (default): requests run in simulated Lambda containers (worker threads, one
   * request at a time each, own module state), as in AWS. 'process': all in this process,
   * concurrently, as the local server runs them.
   */
  runtime?: 'lambda' | 'process';
  /**
   * Most Lambda containers alive at once, like a reserved concurrency (default clients / 2,
   * at least 4): more containers cost cold starts and memory on a small machine.
   */
  maxContainers?: number;
  /** Chance that a client gives up a request after a 5xx (default 0.25). */
  giveUpRate?: number;
  /**
   * The per-step check reads the touched account item once every this many answers (default
   * 8; 1 = after every step). Answers that carry the account (top-ups) are always checked.
   */
  accountCheckEvery?: number;
  /** On failure, write the whole history (one operation a line) to this file. */
  historyFile?: string;
  /** Operations of history printed on failure (default 40). */
  historyTail?: number;
  /** Milliseconds between progress lines; 0 for none (default 10 s when `log` is given). */
  progressMs?: number;
  /**
   * How db calls reach DynamoDB Local (runtime.ts): 'sdk' (default) the deployed document
   * client; 'direct' the same commands and marshalling without the SDK's middleware, for
   * long runs where the client's CPU would otherwise starve DynamoDB Local.
   */
  client?: DbClient;
}

/**
 * Bugs the simulator found in functions/ (see test/sim/regressions.test.ts). With
 * `avoidKnownBugs` the workload leaves out what triggers them, so the rest can be checked.
 */
export const KNOWN_BUGS = {
  sameMillisecondIdentity: 'reserve (holdIsOurs) and direct debit (record.at === entry.at) tell a new hold/debit from the recorded one by its `at` timestamp: within one clock millisecond a second hold is leaked, a second debit kept',
  staleCompactionRemoval: 'an account write carrying compaction removals that lands unseen (timeout) leaves them queued: a later write removes whatever is then under that id (a new hold of a late or reused reserve, a new evt: entry), stranding its money',
  reserveRetryAfterCrashLeaksHold: 'a reserve whose hold was taken for a requestId whose session already exists leaks the hold when its first attempt fails after the account write',
  givenUpReserveLeaksHold: 'a reserve that died after the account write and is never retried leaves a hold that no sweep finds',
  givenUpDirectDebitUnrecorded: 'a direct debit that died after the account write and is never retried stays out of the ledger',
  topUpReplayBody: 'a repeated top-up answers the account as it is now, not the original answer',
  concurrentCompactionRemoval: 'in one process (the local server), two concurrent writes to an account both carry the same queued removal: the second can remove a new entry created in between (runtime "process" only; a Lambda container serves one request at a time)',
  lateReserveDuplicateRefused: 'a reserve retransmitted after its session finished (ops entry compacted) is answered 402/403 when credit is now short, not its original 201; with another body, 402 instead of 409',
  exhaustedTransactionConflict: 'a TransactWrite cancelled by TransactionConflict after the store stops retrying is taken for "the item exists": reserve answers 404 (hold leaked), a step answers 409 conflict',
} as const;

const FAULTY_ATTEMPTS = 3;
const START = Date.parse('2026-01-01T00:00:00.000Z');
const VALIDITY_SECONDS = 300;

// -------------------------------------------------------------------------------- model

type Kind = 'topup' | 'reserve' | 'update' | 'debit' | 'release' | 'refund' | 'dd';

interface Answer {
  status: number;
  body: any;
  contentType: string;
}

interface Req {
  rid: string;
  kind: Kind;
  accountId: string;
  sid?: string;
  method: 'POST';
  path: string;
  body: Record<string, unknown>;
  text: string;
  /** The first answer that the API promises to repeat (2xx, or an update's stored 402). */
  first?: Answer;
  /** Got a final (non-5xx) answer at least once. */
  answered: boolean;
  /** Given up without any final answer. */
  inDoubt: boolean;
  /** Was in doubt at some point (its answer came late). */
  wasInDoubt?: boolean;
  /** Money the request is about (top-up amount, refund amount, expected event charge). */
  amount?: number;
  units?: number;
}

/**
 * What the model knows of a session: 'finished' = a request learned it is closed or expired
 * (409 session_closed, or a release answered as a refund); 'abandoned' = its client walked
 * away after giving up a request (the session may well still be active).
 */
type SessionState = 'active' | 'closed' | 'released' | 'expired' | 'finished' | 'abandoned' | 'unknown';

interface SessionModel {
  sid: string;
  accountId: string;
  serviceId: ServiceId;
  client: number;
  state: SessionState;
  grantedUnits: number;
  /** Largest session total charged seen in an answer. */
  charged: number;
  refunded: number;
  /** Requests about this session that were given up without an answer. */
  inDoubt: Set<string>;
  updates: string[];
  reserveRid: string;
}

interface AccountModel {
  id: string;
  kind: 'prepaid' | 'postpaid';
  creditLimit: number;
  poor: boolean;
  topups: number;
  dd: number;
  refunds: number;
  inDoubt: Set<string>;
  sessions: Set<string>;
  /** Answered top-ups and direct debits, and how many of each were already found in the ledger. */
  confirmedTopups: Req[];
  confirmedDd: Req[];
  verifiedTopups: number;
  verifiedDd: number;
}

type ServiceId = 'voice' | 'sms' | 'wallet';
const SERVICES: Record<ServiceId, { unit: string; amount: number; per: number; body: Record<string, unknown> }> = {
  voice: { unit: 'seconds', amount: 2, per: 60, body: { unit: 'seconds', price: { amount: 2, per: 60 }, validitySeconds: VALIDITY_SECONDS, interimIntervalSeconds: 30 } },
  sms: { unit: 'events', amount: 5, per: 1, body: { unit: 'events', price: { amount: 5, per: 1 }, validitySeconds: VALIDITY_SECONDS, interimIntervalSeconds: 30 } },
  wallet: { unit: 'money', amount: 1, per: 1, body: { unit: 'money', validitySeconds: VALIDITY_SECONDS, interimIntervalSeconds: 60 } },
};
const priceOf = (serviceId: ServiceId, units: number) => Math.ceil(units / SERVICES[serviceId].per) * SERVICES[serviceId].amount;

// ------------------------------------------------------------------------ history, failure

export interface HistoryEntry {
  op: number;
  client: number;
  at: number;
  text: string;
}

export interface Failure {
  check: string;
  message: string;
  op: number;
}

class CheckFailed extends Error {
  constructor(readonly failure: Failure) {
    super(`${failure.check}: ${failure.message}`);
  }
}

export interface SimulationResult {
  seed: number;
  ops: number;
  clients: number;
  opsDone: number;
  pass: boolean;
  failure?: Failure;
  elapsedMs: number;
  opsPerSecond: number;
  counts: Record<string, number>;
  faults: Record<string, number>;
  statuses: Record<string, number>;
  /** DynamoDB calls the handlers made, by command, and calls the auditor made. */
  dbCalls: Record<string, number>;
  auditCalls: number;
  maxOpsEntries: { count: number; finished: number; bytes: number };
  runtime: 'lambda' | 'process';
  client: DbClient;
  /** Lambda containers started (cold starts). */
  containers: number;
  totals: { toppedUp: number; charged: number; refunded: number; balances: number; sessions: number; ledgerEntries: number };
  history: HistoryEntry[];
  /** On failure: the history entries that mention the accounts and sessions the failure names. */
  related: HistoryEntry[];
  tableName: string;
  avoidKnownBugs: boolean;
}

// ------------------------------------------------------------------------------- ledger

interface LedgerRow {
  sk: string;
  entryId: string;
  type: string;
  amount: number;
  reservedDelta: number;
  sessionId?: string;
  requestId?: string;
}

interface SessionLedger {
  charged: number;
  held: number;
  refunded: number;
  expires: number;
  reserveIn: number;
  reserveOut: number;
}

class AccountLedger {
  rows = new Map<string, LedgerRow>();
  sumAmount = 0;
  sumReserved = 0;
  topups = new Map<string, number>();
  charges = new Map<string, number>();
  refunds = new Map<string, { sid: string; amount: number }>();
  sessions = new Map<string, SessionLedger>();
  byType = new Map<string, number>();
  /** Entries at or after this sk prefix may still appear: the next read starts there. */
  from = '0';
  unknown: LedgerRow[] = [];

  session(sid: string): SessionLedger {
    let s = this.sessions.get(sid);
    if (!s) this.sessions.set(sid, (s = { charged: 0, held: 0, refunded: 0, expires: 0, reserveIn: 0, reserveOut: 0 }));
    return s;
  }

  add(row: LedgerRow) {
    if (this.rows.has(row.sk)) return;
    this.rows.set(row.sk, row);
    this.sumAmount += row.amount;
    this.sumReserved += row.reservedDelta;
    this.byType.set(row.type, (this.byType.get(row.type) ?? 0) + row.reservedDelta);
    if (row.type === 'topup') this.topups.set(row.requestId ?? row.entryId, row.amount);
    else if (row.type === 'charge') this.charges.set(row.requestId ?? row.entryId, -row.amount);
    else if (row.type === 'refund') this.refunds.set(row.requestId ?? row.entryId, { sid: row.sessionId ?? '', amount: row.amount });
    if (row.sessionId) {
      const s = this.session(row.sessionId);
      if (row.type === 'debit') s.charged -= row.amount;
      if (row.type === 'refund') s.refunded += row.amount;
      else s.held += row.reservedDelta;
      if (row.type === 'expire') s.expires++;
      if (row.reservedDelta > 0) s.reserveIn += row.reservedDelta;
      else s.reserveOut -= row.reservedDelta;
    } else if (row.type !== 'topup' && row.type !== 'charge') {
      this.unknown.push(row);
    }
  }
}

// ----------------------------------------------------------------------------- simulate

export async function simulate(options: SimulateOptions): Promise<SimulationResult> {
  const sim = new Simulation(options);
  return sim.run();
}

/** Runs, and on failure re-runs the same seed with fewer operations to find the smallest failing prefix. */
export async function simulateAndShrink(options: SimulateOptions & { shrinkBudgetMs?: number }): Promise<{ result: SimulationResult; shrunk?: SimulationResult }> {
  const result = await simulate(options);
  if (result.pass) return { result };
  const log = options.log ?? (() => undefined);
  const deadline = Date.now() + (options.shrinkBudgetMs ?? 180_000);
  // Only the same check counts as failing again: with several clients the interleaving
  // differs between runs, and another failure would explain something else.
  const same = (r: SimulationResult) => !r.pass && r.failure!.check === result.failure!.check;
  let hi = Math.max(1, Math.min(options.ops, result.failure!.op + 1));
  let best: SimulationResult | undefined;
  // The failure may need the whole run's end phase: confirm the bound first.
  if (hi < options.ops) {
    const check = await simulate({ ...options, ops: hi, log: undefined, progressMs: 0, historyFile: undefined });
    log(`shrink: ops=${hi} → ${check.pass ? 'pass' : `FAIL (${check.failure!.check})`}`);
    if (same(check)) best = check;
    else hi = options.ops;
  }
  let lo = 0;
  while (hi - lo > 1 && Date.now() < deadline) {
    const mid = Math.floor((lo + hi) / 2);
    const attempt = await simulate({ ...options, ops: mid, log: undefined, progressMs: 0, historyFile: undefined });
    log(`shrink: ops=${mid} → ${attempt.pass ? 'pass' : `FAIL (${attempt.failure!.check})`}${!attempt.pass && !same(attempt) ? ' (another check: counted as pass)' : ''}`);
    if (same(attempt)) { hi = mid; best = attempt; }
    else lo = mid;
  }
  return { result, shrunk: best ?? result };
}

export function formatFailure(result: SimulationResult, tail = 40): string {
  if (result.pass || !result.failure) return 'PASS';
  const lines = [
    `FAIL seed=${result.seed} ops=${result.ops} clients=${result.clients}${result.avoidKnownBugs ? ' (avoiding known bugs)' : ''}`,
    `check: ${result.failure.check} (at op ${result.failure.op})`,
    `  ${result.failure.message}`,
    `last ${Math.min(tail, result.history.length)} operations:`,
    ...result.history.slice(-tail).map((h) => `  #${h.op} c${h.client} t+${h.at}s ${h.text}`),
  ];
  if (result.related.length) {
    lines.push(`history that mentions what failed (${result.related.length} entries):`, ...result.related.map((h) => `  #${h.op} c${h.client} t+${h.at}s ${h.text}`));
  }
  return lines.join('\n');
}

class Simulation {
  private readonly seed: number;
  private readonly ops: number;
  private readonly clientCount: number;
  private readonly log: (line: string) => void;
  private readonly faultsOn: boolean;
  private readonly avoid: boolean;
  private readonly auditEvery: number;
  private readonly maxAttempts: number;
  private readonly faultRate: number;
  private readonly giveUpRate: number;
  private readonly historyTail: number;
  private readonly historyFile?: string;
  private readonly progressMs: number;

  private readonly clockBuffer = new SharedArrayBuffer(8);
  private readonly clock = new BigInt64Array(this.clockBuffer);
  private get nowMs(): number {
    return Number(Atomics.load(this.clock, 0));
  }
  private advanceMs(ms: number) {
    Atomics.add(this.clock, 0, BigInt(Math.round(ms)));
  }
  private readonly endpoint: string;
  private readonly realisticClock: boolean;
  private readonly runtimeKind: 'lambda' | 'process';
  private readonly maxContainers: number;
  private readonly client: DbClient;
  private runtime!: Runtime;
  private runtimeStats: RuntimeStats = { calls: {}, injected: {}, containers: 0 };
  private readonly injected = new Map<string, number>();
  private readonly tableName: string;
  private readonly audit: ReturnType<typeof documentClient>;
  private readonly token = apiToken();

  private readonly accounts = new Map<string, AccountModel>();
  private readonly reqs = new Map<string, Req>();
  private readonly sessions = new Map<string, SessionModel>();
  private readonly ledgers = new Map<string, AccountLedger>();
  private readonly history: HistoryEntry[] = [];
  private readonly counts = new Map<string, number>();
  private readonly statuses = new Map<string, number>();
  private failure: Failure | null = null;
  private opsDone = 0;
  private accountCheckTick = 0;
  private readonly accountCheckEvery: number;
  private auditCalls = 0;
  /** The largest `ops` map seen on an account at an audit: how well compaction keeps up. */
  private maxOpsEntries = { count: 0, finished: 0, bytes: 0 };
  private currentOp = 0;

  constructor(options: SimulateOptions) {
    this.seed = options.seed >>> 0;
    this.ops = options.ops;
    this.clientCount = Math.max(1, options.clients ?? 16);
    this.log = options.log ?? (() => undefined);
    this.faultsOn = options.faults ?? true;
    this.avoid = options.avoidKnownBugs ?? false;
    this.auditEvery = options.auditEvery ?? Math.max(50, Math.min(1000, Math.ceil(options.ops / 40)));
    this.maxAttempts = options.maxAttempts ?? 6;
    this.faultRate = options.faultRate ?? 0.12;
    this.giveUpRate = options.giveUpRate ?? 0.25;
    this.historyTail = options.historyTail ?? 40;
    this.accountCheckEvery = Math.max(1, options.accountCheckEvery ?? 8);
    this.historyFile = options.historyFile;
    this.progressMs = options.progressMs ?? (options.log ? 10_000 : 0);
    this.tableName = `sim-${this.seed.toString(16)}-${Date.now().toString(36)}-${(splitmix32(this.seed ^ Date.now()) & 0xffff).toString(16)}`;
    this.client = options.client ?? 'sdk';
    const auditClient = this.client === 'direct' ? new DirectDb(options.endpoint) : documentClient({ endpoint: options.endpoint });
    this.audit = { send: (command: any) => { this.auditCalls++; return auditClient.send(command); } } as ReturnType<typeof documentClient>;
    this.endpoint = options.endpoint;
    Atomics.store(this.clock, 0, BigInt(START));
    // KNOWN_BUGS.sameMillisecondIdentity: a realistic clock never gives two reads the same millisecond.
    this.realisticClock = (options.clock ?? (this.avoid ? 'realistic' : 'frozen')) === 'realistic';
    this.runtimeKind = options.runtime ?? 'lambda';
    this.maxContainers = options.maxContainers ?? Math.max(4, Math.ceil(this.clientCount / 2));
  }

  // ------------------------------------------------------------------------- plumbing

  private count(name: string, by = 1) {
    this.counts.set(name, (this.counts.get(name) ?? 0) + by);
  }

  private fail(check: string, message: string): never {
    const failure = { check, message, op: this.currentOp };
    this.failure ??= failure;
    throw new CheckFailed(failure);
  }

  private record(client: number, text: string, op = this.currentOp) {
    this.history.push({ op, client, at: Math.round((this.nowMs - START) / 1000), text });
    if (this.history.length > 300_000) this.history.splice(0, 100_000);
  }

  private iso(ms = this.nowMs) {
    return new Date(ms).toISOString();
  }

  private noteInjected(injected: string[]) {
    for (const fault of injected) {
      const kind = fault.split('@')[0]!;
      this.injected.set(kind, (this.injected.get(kind) ?? 0) + 1);
    }
  }

  /** One attempt, in a container (or this process), under its fault plan. */
  private async call(method: string, path: string, body: string | undefined, plan: FaultPlan | null, label: string) {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const reply = await this.runtime.http(method, path, headers, body ?? '', plan, label);
    this.noteInjected(reply.injected);
    let parsed: unknown = reply.text;
    try { parsed = reply.text ? JSON.parse(reply.text) : undefined; } catch { /* not JSON: the shape check says so */ }
    const answer: Answer = { status: reply.status, body: reply.thrown ? { thrown: reply.thrown } : parsed, contentType: reply.contentType };
    return { answer, injected: reply.injected, errors: reply.errors };
  }

  /**
   * Sends a request like a Diameter client: retries the same requestId and body on 5xx.
   * Returns null when the client gave up (the request is then in doubt).
   */
  private async send(client: Client | null, method: 'GET' | 'POST' | 'PUT', path: string, text: string | undefined,
    opts: { faults: boolean; giveUp: boolean; label: string; trace: string[] }): Promise<Answer | null> {
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const plan = opts.faults && this.faultsOn && client && attempt < FAULTY_ATTEMPTS
        ? drawPlan(client.rng, this.faultRate, { avoidKnownBugs: this.avoid })
        : null;
      const ctx = await this.call(method, path, text, plan, opts.label);
      const answer = ctx.answer;
      this.statuses.set(String(answer.status), (this.statuses.get(String(answer.status)) ?? 0) + 1);
      const faults = ctx.injected.length ? `[${ctx.injected.join(',')}]` : '';
      const errs = ctx.errors.length ? `{${ctx.errors.join('; ').slice(0, 200)}}` : '';
      opts.trace.push(`${answer.status}${faults}${errs}`);
      if (answer.status < 500) return answer;
      this.count('retry');
      if (ctx.injected.length === 0) {
        this.fail('e: unprovoked 5xx', `${method} ${path} ${text ?? ''} answered ${answer.status} with no fault injected in that attempt: ${JSON.stringify(answer.body)} ${errs}`);
      }
      if (opts.giveUp && client && client.rng.chance(this.giveUpRate)) {
        this.count('gave-up');
        opts.trace.push('gave up');
        return null;
      }
    }
    this.fail('e: final 5xx', `${method} ${path} ${text ?? ''} still answered 5xx after ${this.maxAttempts} attempts (${opts.trace.join(' ')})`);
  }

  // ------------------------------------------------------------------------- checks

  private checkProblemShape(answer: Answer, what: string) {
    if (answer.status < 400) return;
    if (!answer.contentType.includes('application/problem+json')) this.fail('shape', `${what}: ${answer.status} without application/problem+json (${answer.contentType})`);
    if (typeof answer.body?.code !== 'string' || answer.body?.status !== answer.status) {
      this.fail('shape', `${what}: problem body ${JSON.stringify(answer.body)} lacks a string code or status ${answer.status}`);
    }
  }

  /** In avoid mode, a known bug's symptom is counted instead of failing the run. */
  private tolerated(bug: keyof typeof KNOWN_BUGS): boolean {
    if (!this.avoid) return false;
    this.count(`known bug tolerated: ${bug}`);
    return true;
  }

  private isSuccess(kind: Kind, answer: Answer) {
    return (answer.status >= 200 && answer.status < 300) || (kind === 'update' && answer.status === 402);
  }

  private sameAnswer(req: Req, a: Answer, b: Answer): boolean {
    if (req.kind === 'topup' && this.avoid) {
      // KNOWN_BUGS.topUpReplayBody: only the stable part of a top-up's answer repeats.
      const pick = (x: Answer) => ({ status: x.status, accountId: x.body?.accountId, currency: x.body?.currency, kind: x.body?.kind });
      return isDeepStrictEqual(pick(a), pick(b));
    }
    return a.status === b.status && isDeepStrictEqual(a.body, b.body);
  }

  /** Checks one final answer to `req` and applies its effect to the model on the first success. */
  private onAnswer(req: Req, answer: Answer) {
    const what = `${req.kind} ${req.path} ${req.text}`;
    this.checkProblemShape(answer, what);
    req.answered = true;
    if (req.inDoubt) {
      req.inDoubt = false;
      this.accounts.get(req.accountId)?.inDoubt.delete(req.rid);
      if (req.sid) this.sessions.get(req.sid)?.inDoubt.delete(req.rid);
    }
    if (this.isSuccess(req.kind, answer)) {
      if (req.first) {
        if (!this.sameAnswer(req, req.first, answer)) {
          this.fail('d: replay differs', `${what}: first answer ${req.first.status} ${JSON.stringify(req.first.body)}, now ${answer.status} ${JSON.stringify(answer.body)}`);
        }
        return;
      }
      req.first = answer;
      this.applyEffect(req, answer, what);
      return;
    }
    if (req.first) {
      if (req.kind === 'reserve' && [402, 403].includes(answer.status) && this.tolerated('lateReserveDuplicateRefused')) return;
      this.fail('d: replay differs', `${what}: first answer ${req.first.status} ${JSON.stringify(req.first.body)}, now ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    const code = answer.body?.code;
    const allowed: Record<Kind, Array<[number, string]>> = {
      topup: [],
      reserve: [[402, 'insufficient_credit']],
      update: [[409, 'session_closed']],
      debit: [[409, 'session_closed']],
      release: [[409, 'session_closed'], [409, 'conflict']],
      refund: [[409, 'conflict']],
      dd: [[402, 'insufficient_credit']],
    };
    if (!allowed[req.kind].some(([s, c]) => s === answer.status && c === code)) {
      this.fail('unexpected answer', `${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    if (req.sid && answer.status === 409 && code === 'session_closed') {
      const s = this.sessions.get(req.sid);
      if (s && (s.state === 'active' || s.state === 'abandoned' || s.state === 'unknown')) s.state = 'finished';
    }
    if (req.kind === 'refund' && req.sid) {
      const s = this.sessions.get(req.sid)!;
      if (s.inDoubt.size === 0 && req.amount !== undefined && req.amount <= s.charged - s.refunded) {
        this.fail('unexpected answer', `${what}: refund of ${req.amount} refused though ${s.charged - s.refunded} was refundable: ${JSON.stringify(answer.body)}`);
      }
    }
  }

  private applyEffect(req: Req, answer: Answer, what: string) {
    const body = answer.body ?? {};
    const account = this.accounts.get(req.accountId)!;
    const int = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
    switch (req.kind) {
      case 'topup': {
        if (answer.status !== 200) this.fail('unexpected answer', `${what}: ${answer.status}`);
        if (body.accountId !== req.accountId || body.available !== body.balance - body.reserved + body.creditLimit || body.available < 0 || body.reserved < 0
          || body.balance < (account.kind === 'prepaid' ? 0 : -account.creditLimit)) {
          this.fail('b: account arithmetic', `${what}: answer ${JSON.stringify(body)}`);
        }
        account.topups += req.amount!;
        account.confirmedTopups.push(req);
        return;
      }
      case 'dd': {
        if (answer.status !== 201 || body.charged?.amount !== req.amount || body.charged?.units !== req.units || body.chargedAccountId !== req.accountId) {
          this.fail('rating', `${what}: expected 201 charging ${req.units} units = ${req.amount}, got ${answer.status} ${JSON.stringify(body)}`);
        }
        account.dd += req.amount!;
        account.confirmedDd.push(req);
        return;
      }
      case 'reserve': {
        const sid = sessionIdFor(req.rid);
        const service = req.body.serviceId as ServiceId;
        const g = body.granted ?? {};
        const requested = req.body.requested as { units?: number; amount?: number };
        const wanted = requested.units ?? Math.floor(requested.amount! / SERVICES[service].amount) * SERVICES[service].per;
        if (answer.status !== 201 || body.sessionId !== sid || body.state !== 'active' || body.chargedAccountId !== req.accountId
          || !int(g.units) || g.units < 1 || g.units > wanted || g.amount !== priceOf(service, g.units)) {
          this.fail('rating', `${what}: reserve answer ${answer.status} ${JSON.stringify(body)} (wanted ${wanted} units)`);
        }
        const s = this.sessionFor(sid, req, service);
        s.state = 'active';
        s.grantedUnits = g.units;
        return;
      }
      case 'update':
      case 'debit':
      case 'release':
      case 'refund': {
        const s = this.sessions.get(req.sid!)!;
        const service = s.serviceId;
        if (body.charged && (!int(body.charged.amount) || !int(body.charged.units) || body.charged.amount > priceOf(service, body.charged.units))) {
          this.fail('rating', `${what}: charged ${JSON.stringify(body.charged)} is more than ${body.charged.units} units cost`);
        }
        if (body.charged) s.charged = Math.max(s.charged, body.charged.amount);
        if (req.kind === 'update') {
          if (answer.status === 200) {
            if (!int(body.granted?.units) || body.granted.amount !== priceOf(service, body.granted.units)) this.fail('rating', `${what}: granted ${JSON.stringify(body.granted)}`);
            s.grantedUnits = body.granted.units;
          } else {
            if (body.code !== 'insufficient_credit') this.fail('unexpected answer', `${what}: ${JSON.stringify(body)}`);
            s.grantedUnits = 0;
          }
          return;
        }
        if (req.kind === 'debit') {
          if (body.state !== 'closed' || !int(body.returned?.amount)) this.fail('unexpected answer', `${what}: ${JSON.stringify(body)}`);
          s.state = 'closed';
          return;
        }
        if (body.state === 'released' && body.refunded?.amount === 0) {
          if (!int(body.returned?.amount)) this.fail('unexpected answer', `${what}: ${JSON.stringify(body)}`);
          s.state = 'released';
          return;
        }
        // A refund (or a release that met an already finished session: a refund of what is left).
        const amount = body.refunded?.amount;
        if (!int(amount) || amount < 1 || (req.amount !== undefined && amount !== req.amount)) this.fail('unexpected answer', `${what}: ${JSON.stringify(body)}`);
        if (req.kind === 'release') this.count('release-became-refund');
        s.refunded += amount;
        account.refunds += amount;
        if (s.state === 'active' || s.state === 'unknown' || s.state === 'abandoned') s.state = 'finished';
        if (!Number.isSafeInteger(body.refundedTotal?.amount)
          || (s.inDoubt.size === 0 && body.refundedTotal.amount > s.refunded)
          || (s.inDoubt.size === 0 && !req.wasInDoubt && body.refundedTotal.amount !== s.refunded)) {
          this.fail('refund', `${what}: refundedTotal ${JSON.stringify(body.refundedTotal)} but the model has ${s.refunded}`);
        }
        if (s.refunded > s.charged && s.inDoubt.size === 0) this.fail('refund', `${what}: refunded ${s.refunded} of a session that charged ${s.charged}`);
        return;
      }
    }
  }

  private sessionFor(sid: string, req: Req, serviceId: ServiceId): SessionModel {
    let s = this.sessions.get(sid);
    if (!s) {
      s = { sid, accountId: req.accountId, serviceId, client: -1, state: 'unknown', grantedUnits: 0, charged: 0, refunded: 0, inDoubt: new Set(), updates: [], reserveRid: req.rid };
      this.sessions.set(sid, s);
      this.accounts.get(req.accountId)!.sessions.add(sid);
    }
    return s;
  }

  private markInDoubt(req: Req) {
    if (req.answered) return;
    req.inDoubt = true;
    req.wasInDoubt = true;
    if (req.sid) this.sessions.get(req.sid)?.inDoubt.add(req.rid);
    else this.accounts.get(req.accountId)!.inDoubt.add(req.rid);
    if (req.kind === 'reserve') {
      const s = this.sessionFor(sessionIdFor(req.rid), req, req.body.serviceId as ServiceId);
      s.inDoubt.add(req.rid);
    }
  }

  /** The cheap per-step check: the touched account's own invariants (one consistent read). */
  private async checkAccountItem(accountId: string, what: string) {
    const { Item } = await this.audit.send(new GetCommand({ TableName: this.tableName, Key: { pk: `ACC#${accountId}`, sk: 'ACCOUNT' }, ConsistentRead: true }));
    if (!Item) this.fail('b: account', `${what}: account ${accountId} vanished`);
    this.checkAccountInvariants(Item!, what);
    return Item!;
  }

  private checkAccountInvariants(item: Record<string, any>, what: string) {
    const a = this.accounts.get(item.accountId)!;
    const floor = a.kind === 'prepaid' ? 0 : -a.creditLimit;
    if (item.available !== item.balance - item.reserved + a.creditLimit) {
      this.fail('a: available', `${what}: ${item.accountId} available ${item.available} != balance ${item.balance} - reserved ${item.reserved} + creditLimit ${a.creditLimit}`);
    }
    if (item.balance < floor) this.fail('b: floor', `${what}: ${item.accountId} balance ${item.balance} below its floor ${floor}`);
    if (item.available < 0) this.fail('b: available', `${what}: ${item.accountId} available ${item.available} < 0`);
    if (item.reserved < 0) this.fail('b: reserved', `${what}: ${item.accountId} reserved ${item.reserved} < 0`);
  }

  // ---------------------------------------------------------------------- full audit

  private async refreshLedger(accountId: string): Promise<AccountLedger> {
    let ledger = this.ledgers.get(accountId);
    if (!ledger) this.ledgers.set(accountId, (ledger = new AccountLedger()));
    let start: Record<string, any> | undefined;
    do {
      const page = await this.audit.send(new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk AND sk >= :from',
        ExpressionAttributeValues: { ':pk': `LEDGER#${accountId}`, ':from': ledger.from },
        ConsistentRead: true,
        ExclusiveStartKey: start,
      }));
      for (const item of page.Items ?? []) {
        if (!Number.isSafeInteger(item.amount) || !Number.isSafeInteger(item.reservedDelta)) this.fail('a: ledger', `entry ${item.sk} of ${accountId} is not integer money: ${JSON.stringify(item)}`);
        ledger.add({ sk: item.sk, entryId: item.entryId, type: item.type, amount: item.amount, reservedDelta: item.reservedDelta, sessionId: item.sessionId, requestId: item.requestId });
      }
      start = page.LastEvaluatedKey;
    } while (start);
    if (ledger.unknown.length) this.fail('a: ledger', `unexpected ledger entries on ${accountId}: ${JSON.stringify(ledger.unknown.slice(0, 3))}`);
    return ledger;
  }

  /**
   * Everything about the money, with all clients stopped. `final`: nothing may be in doubt,
   * lag behind the account or stay reserved.
   */
  private async fullAudit(final: boolean): Promise<void> {
    this.count(final ? 'audit(final)' : 'audit');
    let totalBalance = 0;
    let totalExpected = 0;
    for (const account of this.accounts.values()) {
      const what = `${final ? 'final ' : ''}audit of ${account.id}`;
      const item = await this.checkAccountItem(account.id, what);
      const ledger = await this.refreshLedger(account.id);
      const ops: Record<string, any> = item.ops ?? {};
      const opsCount = Object.keys(ops).length;
      if (opsCount > this.maxOpsEntries.count) this.maxOpsEntries = { count: opsCount, finished: Object.values(ops).filter((o) => o.done).length, bytes: JSON.stringify(item).length };
      // The account is the commit point; session items and ledger may lag behind it by the
      // steps of requests that were given up. Each lag must belong to such a request.
      let balanceLag = 0;
      let reservedLag = 0;
      let lagFrom = this.iso();
      const sysCharged = new Map<string, number>();
      for (const [opId, op] of Object.entries(ops)) {
        if (opId.startsWith('evt:')) {
          const rid = opId.slice(4);
          if (ledger.charges.has(rid)) continue;
          balanceLag -= op.chg;
          const req = this.reqs.get(rid);
          if (!req || !account.inDoubt.has(rid) || final) {
            this.fail('a: ledger lags', `${what}: direct debit ${rid} moved ${op.chg} on the account but is not in the ledger (${req ? (req.inDoubt ? 'client gave up' : 'answered') : 'unknown request'}) op=${JSON.stringify(op)}`);
          }
          if (op.at < lagFrom) lagFrom = op.at;
          continue;
        }
        const sl = ledger.session(opId);
        const lagC = op.chg - sl.charged;
        const lagR = op.amt - sl.held;
        sysCharged.set(opId, op.chg);
        if (lagC === 0 && lagR === 0) continue;
        balanceLag -= lagC;
        reservedLag += lagR;
        const s = this.sessions.get(opId);
        // A sweep run that failed half-way leaves its expiry on the account only: the next
        // sweep (or the next request on the session) records it.
        const bySweep = String(op.rid).startsWith('expire:');
        if (!s || (s.inDoubt.size === 0 && !bySweep) || final) {
          this.fail('a: ledger lags', `${what}: session ${opId} is ahead on the account (charged ${op.chg}, held ${op.amt}) of its ledger (charged ${sl.charged}, held ${sl.held}) ${s ? `with ${s.inDoubt.size} requests in doubt, state ${s.state}` : '(unknown session)'} op=${JSON.stringify(op)}`);
        }
        if (op.at < lagFrom) lagFrom = op.at;
      }
      ledger.from = lagFrom < this.iso() ? lagFrom : this.iso();
      // (a) ledger reconciles with the account.
      const evidence = () => {
        const live = Object.entries(ops).filter(([, op]) => !op.done).map(([id, op]) => `${id}{seq ${op.seq}, rid ${op.rid}, amt ${op.amt}, chg ${op.chg}, at ${op.at}}`);
        const held = [...ledger.sessions].filter(([, sl]) => sl.held !== 0).map(([sid, sl]) => `${sid}{ledger held ${sl.held}, model ${this.sessions.get(sid)?.state ?? 'unknown'}}`);
        return `; live holds on the account: ${live.join(' ') || 'none'}; sessions holding in the ledger: ${held.join(' ') || 'none'}`;
      };
      if (item.balance !== ledger.sumAmount + balanceLag) {
        this.fail('a: ledger vs balance', `${what}: balance ${item.balance} but ledger sums to ${ledger.sumAmount} (+ ${balanceLag} not yet recorded)${evidence()}`);
      }
      if (item.reserved !== ledger.sumReserved + reservedLag) {
        this.fail('a: ledger vs reserved', `${what}: reserved ${item.reserved} but ledger reservations sum to ${ledger.sumReserved} (+ ${reservedLag} not yet recorded)${evidence()}`);
      }
      // (a) every ledger movement is explained by a request the model knows, for the same money.
      for (const [rid, amount] of ledger.topups) {
        const req = this.reqs.get(rid);
        if (!req || req.kind !== 'topup' || req.accountId !== account.id || req.amount !== amount || (req.answered && !req.first)) {
          this.fail('a: unexplained top-up', `${what}: ledger top-up ${rid} of ${amount}; the model has ${req ? `${req.kind} of ${req.amount} on ${req.accountId}, ${req.first ? 'answered' : req.inDoubt ? 'in doubt' : 'refused'}` : 'no such request'}`);
        }
      }
      for (const [rid, amount] of ledger.charges) {
        const req = this.reqs.get(rid);
        if (!req || req.kind !== 'dd' || req.accountId !== account.id || req.amount !== amount || (req.answered && !req.first)) {
          this.fail('a: unexplained charge', `${what}: ledger charge ${rid} of ${amount}; the model has ${req ? `${req.kind} of ${req.amount} on ${req.accountId}, ${req.first ? 'answered' : req.inDoubt ? 'in doubt' : 'refused'}` : 'no such request'}`);
        }
      }
      for (const [rid, r] of ledger.refunds) {
        const req = this.reqs.get(rid);
        if (!req || (req.kind !== 'refund' && req.kind !== 'release') || req.sid !== r.sid || (req.answered && !req.first) || (req.first && req.first.body?.refunded?.amount !== r.amount)) {
          this.fail('a: unexplained refund', `${what}: ledger refund ${rid} of ${r.amount} on ${r.sid}; the model has ${req ? `${req.kind} ${JSON.stringify(req.first?.body)}` : 'no such request'}`);
        }
      }
      // Money conservation against the answers the system gave.
      let expected = account.topups - account.dd + account.refunds;
      for (const rid of account.inDoubt) {
        const req = this.reqs.get(rid)!;
        if (req.kind === 'topup') expected += ledger.topups.get(rid) ?? 0;
        if (req.kind === 'dd') expected -= ledger.charges.get(rid) ?? ops[`evt:${rid}`]?.chg ?? 0;
      }
      for (const [rid] of ledger.topups) if (!account.inDoubt.has(rid) && !this.reqs.get(rid)?.first) this.fail('a: unexplained top-up', `${what}: ${rid}`);
      // Ledger entries are never removed: each answered request needs finding once.
      for (; account.verifiedTopups < account.confirmedTopups.length; account.verifiedTopups++) {
        const req = account.confirmedTopups[account.verifiedTopups]!;
        if (!ledger.topups.has(req.rid)) this.fail('a: missing top-up', `${what}: answered top-up ${req.rid} of ${req.amount} is not in the ledger`);
      }
      for (; account.verifiedDd < account.confirmedDd.length; account.verifiedDd++) {
        const req = account.confirmedDd[account.verifiedDd]!;
        if (!ledger.charges.has(req.rid)) this.fail('a: missing charge', `${what}: answered direct debit ${req.rid} of ${req.amount} is not in the ledger`);
      }
      const seen = new Set<string>();
      for (const sid of [...account.sessions, ...ledger.sessions.keys()]) {
        if (seen.has(sid)) continue;
        seen.add(sid);
        const s = this.sessions.get(sid);
        const sl = ledger.session(sid);
        if (!s) this.fail('a: unknown session', `${what}: ledger has entries of session ${sid} the model never saw`);
        const charged = sysCharged.get(sid) ?? sl.charged;
        const steps = [...s!.inDoubt].filter((rid) => this.reqs.get(rid)?.kind !== 'refund');
        const refunds = [...s!.inDoubt].filter((rid) => this.reqs.get(rid)?.kind === 'refund' || this.reqs.get(rid)?.kind === 'release');
        if (steps.length === 0 ? charged !== s!.charged : charged < s!.charged) {
          this.fail('a: session charged', `${what}: session ${sid} charged ${charged} on the account/ledger, the answers say ${s!.charged} (${steps.length} steps in doubt)`);
        }
        expected -= charged;
        for (const rid of refunds) expected += ledger.refunds.get(rid)?.amount ?? 0;
        if (refunds.length === 0 && sl.refunded !== s!.refunded) {
          this.fail('a: session refunded', `${what}: session ${sid} refunded ${sl.refunded} in the ledger, the answers say ${s!.refunded}`);
        }
        if (sl.held < 0) this.fail('c: hold', `${what}: session ${sid} released more than it reserved (${JSON.stringify(sl)})`);
        if (sl.expires > 1) this.fail('c: resolved once', `${what}: session ${sid} expired ${sl.expires} times`);
      }
      if (item.balance !== expected) {
        this.fail('a: conservation', `${what}: balance ${item.balance}, but top-ups ${account.topups} - direct debits ${account.dd} - session charges + refunds ${account.refunds} (with in-doubt requests resolved from the ledger) = ${expected}`);
      }
      totalBalance += item.balance;
      totalExpected += expected;
      if (final) await this.finalAccountChecks(account, item, ledger);
    }
    if (totalBalance !== totalExpected) this.fail('a: conservation', `sum of balances ${totalBalance} != ${totalExpected}`);
  }

  private async finalAccountChecks(account: AccountModel, item: Record<string, any>, ledger: AccountLedger) {
    const what = `final audit of ${account.id}`;
    if (item.reserved !== 0) this.fail('c: reserved', `${what}: reserved ${item.reserved} after every session expired`);
    for (const [opId, op] of Object.entries(item.ops ?? {}) as Array<[string, any]>) {
      if (!op.done) this.fail('c: live hold', `${what}: ops entry ${opId} is still a live hold ${JSON.stringify(op)}`);
    }
    // Every reservation resolved exactly once: what went into holds came out by debit, release or expiry.
    const inHolds = ledger.byType.get('reserve') ?? 0;
    const outOfHolds = -((ledger.byType.get('debit') ?? 0) + (ledger.byType.get('release') ?? 0) + (ledger.byType.get('expire') ?? 0));
    if (inHolds !== outOfHolds) this.fail('c: resolved once', `${what}: reserve entries ${inHolds} != debits-from-hold + releases + expiries ${outOfHolds}`);
    for (const [sid, sl] of ledger.sessions) {
      if (sl.held !== 0) this.fail('c: resolved once', `${what}: session ${sid} still holds ${sl.held} in the ledger (${JSON.stringify(sl)})`);
    }
  }

  /** The final word on every session: its item is finished and agrees with the answers and the ledger. */
  private async finalSessionChecks() {
    const ids = [...this.sessions.keys()];
    for (let i = 0; i < ids.length; i += 100) {
      const keys = ids.slice(i, i + 100).map((sid) => ({ pk: `SES#${sid}`, sk: 'SESSION' }));
      let request: Record<string, any> | undefined = { [this.tableName]: { Keys: keys, ConsistentRead: true } };
      const items: Record<string, any>[] = [];
      while (request && Object.keys(request).length) {
        const page: any = await this.audit.send(new BatchGetCommand({ RequestItems: request }));
        items.push(...(page.Responses?.[this.tableName] ?? []));
        request = page.UnprocessedKeys;
      }
      const byId = new Map(items.map((it) => [it.sessionId as string, it]));
      for (const sid of ids.slice(i, i + 100)) {
        const s = this.sessions.get(sid)!;
        const item = byId.get(sid);
        const what = `final audit of session ${sid} (account ${s.accountId})`;
        if (!item) {
          if (s.charged !== 0 || s.state !== 'unknown') this.fail('c: session', `${what}: no session item, the model has ${s.state}`);
          continue;
        }
        if (!['closed', 'expired', 'released'].includes(item.state)) this.fail('c: session state', `${what}: still ${item.state} after the clock passed every validity and the sweep ran`);
        if (item.hold?.chargedMinor !== s.charged) this.fail('c: session charged', `${what}: item charged ${item.hold?.chargedMinor}, answers ${s.charged}`);
        if (item.refundedMinor !== s.refunded) this.fail('c: session refunded', `${what}: item refunded ${item.refundedMinor}, answers ${s.refunded}`);
        if (item.hold?.holdMinor !== 0) this.fail('c: session hold', `${what}: item still holds ${item.hold?.holdMinor}`);
        const ledger = this.ledgers.get(s.accountId)!.session(sid);
        if (ledger.charged !== s.charged || ledger.refunded !== s.refunded || ledger.held !== 0) {
          this.fail('c: session ledger', `${what}: ledger ${JSON.stringify(ledger)}, answers charged ${s.charged} refunded ${s.refunded}`);
        }
        if (item.state !== 'expired' && ledger.expires > 0) {
          this.fail('c: session ledger', `${what}: state ${item.state} but ${ledger.expires} expire entries`);
        }
        if (s.state === 'closed' && item.state !== 'closed') this.fail('c: session state', `${what}: answered closed, item says ${item.state}`);
        if (s.state === 'released' && item.state !== 'released') this.fail('c: session state', `${what}: answered released, item says ${item.state}`);
      }
    }
  }

  // --------------------------------------------------------------------------- setup

  private async setup() {
    const rng = new Rng(this.seed ^ 0x5eed);
    await ensureTable(createStore({ tableName: this.tableName, endpoint: this.endpoint }));
    process.env.TABLE_NAME = this.tableName;
    const runtimeOptions = { endpoint: this.endpoint, tableName: this.tableName, clock: this.clockBuffer, realisticClock: this.realisticClock, serviceCacheMs: 60_000, client: this.client };
    this.runtime = this.runtimeKind === 'lambda' ? new LambdaRuntime({ ...runtimeOptions, maxContainers: this.maxContainers }) : new ProcessRuntime(runtimeOptions);
    const trace: string[] = [];
    const must = async (method: 'PUT' | 'POST', path: string, body: unknown, status: number[]) => {
      const answer = await this.send(null, method, path, JSON.stringify(body), { faults: false, giveUp: false, label: 'setup', trace });
      if (!answer || !status.includes(answer.status)) this.fail('setup', `${method} ${path} answered ${answer?.status} ${JSON.stringify(answer?.body)}`);
      return answer!;
    };
    for (const [id, s] of Object.entries(SERVICES)) await must('PUT', `/services/${id}`, s.body, [200]);
    const prepaid = Math.max(4, Math.ceil(this.clientCount * 0.6));
    const postpaid = Math.max(2, Math.ceil(this.clientCount * 0.25));
    for (let i = 0; i < prepaid + postpaid; i++) {
      const kind = i < prepaid ? 'prepaid' : 'postpaid';
      const id = kind === 'prepaid' ? `pre-${i}` : `post-${i - prepaid}`;
      const creditLimit = kind === 'postpaid' ? rng.range(200, 3000) : 0;
      await must('POST', '/accounts', { accountId: id, currency: 'EUR', kind, ...(kind === 'postpaid' ? { creditLimit } : {}) }, [201]);
      this.accounts.set(id, { id, kind, creditLimit, poor: i % 3 === 2, topups: 0, dd: 0, refunds: 0, inDoubt: new Set(), sessions: new Set(),
        confirmedTopups: [], confirmedDd: [], verifiedTopups: 0, verifiedDd: 0 });
      if (kind === 'prepaid' && i % 3 !== 2) {
        const req = this.newReq('topup', id, `setup-topup-${id}`, `/accounts/${id}/topup`, { requestId: `setup-topup-${id}`, amount: rng.range(500, 3000) });
        req.amount = req.body.amount as number;
        const answer = await must('POST', req.path, req.body, [200]);
        this.onAnswer(req, answer);
      }
    }
  }

  private newReq(kind: Kind, accountId: string, rid: string, path: string, body: Record<string, unknown>, sid?: string): Req {
    const req: Req = { rid, kind, accountId, sid, method: 'POST', path, body, text: JSON.stringify(body), answered: false, inDoubt: false };
    this.reqs.set(rid, req);
    return req;
  }

  // ------------------------------------------------------------------------------ run

  async run(): Promise<SimulationResult> {
    const started = Date.now();
    const clients = Array.from({ length: this.clientCount }, (_, i) => new Client(this, i, new Rng(splitmix32(this.seed) ^ Math.imul(i + 1, 0x9e3779b1))));
    let lastProgress = Date.now();
    try {
      await this.setup();
      this.log(`table ${this.tableName}: ${this.accounts.size} accounts, ${this.clientCount} clients, runtime ${this.runtimeKind}${this.runtimeKind === 'lambda' ? ` (up to ${this.maxContainers} containers)` : ''}, ${this.realisticClock ? 'realistic' : 'frozen'} clock, audit every ${this.auditEvery} ops, faults ${this.faultsOn ? 'on' : 'off'}${this.avoid ? ', avoiding known bugs' : ''}`);
      for (let start = 0; start < this.ops; start += this.auditEvery) {
        const end = Math.min(this.ops, start + this.auditEvery);
        let next = start;
        await Promise.all(clients.map(async (client) => {
          while (next < end && !this.failure) {
            const op = next++;
            this.currentOp = op;
            await client.step(op);
            this.opsDone++;
          }
        }));
        await this.runtime.idle();
        this.currentOp = end;
        await this.fullAudit(false);
        if (this.progressMs && Date.now() - lastProgress >= this.progressMs) {
          lastProgress = Date.now();
          const secs = (Date.now() - started) / 1000;
          this.log(`progress ${end}/${this.ops} ops, ${(this.opsDone / secs).toFixed(0)} ops/s, ${this.sessions.size} sessions, sim clock +${Math.round((this.nowMs - START) / 1000)}s, ${[...this.injected.values()].reduce((a, b) => a + b, 0)} faults`);
        }
      }
      await this.endPhase(clients);
    } catch (error) {
      await this.runtime?.idle().catch(() => undefined);
      if (!(error instanceof CheckFailed)) {
        this.failure ??= { check: 'simulator error', message: (error as Error)?.stack ?? String(error), op: this.currentOp };
      }
    } finally {
      if (this.runtime) {
        this.runtimeStats = await this.runtime.stats().catch(() => this.runtimeStats);
        await this.runtime.close().catch(() => undefined);
      }
    }
    const elapsedMs = Date.now() - started;
    if (this.failure && this.historyFile) {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(this.historyFile, this.history.map((h) => `#${h.op} c${h.client} t+${h.at}s ${h.text}`).join('\n') + '\n');
    }
    const balances = await this.balances().catch(() => NaN);
    return {
      seed: this.seed,
      ops: this.ops,
      clients: this.clientCount,
      opsDone: this.opsDone,
      pass: !this.failure,
      ...(this.failure ? { failure: this.failure } : {}),
      elapsedMs,
      opsPerSecond: this.opsDone / (elapsedMs / 1000),
      counts: Object.fromEntries([...this.counts].sort()),
      faults: Object.fromEntries([...this.injected].sort()),
      statuses: Object.fromEntries([...this.statuses].sort()),
      dbCalls: Object.fromEntries(Object.entries(this.runtimeStats.calls).sort()),
      containers: this.runtimeStats.containers,
      runtime: this.runtimeKind,
      client: this.client,
      auditCalls: this.auditCalls,
      maxOpsEntries: this.maxOpsEntries,
      totals: {
        toppedUp: [...this.accounts.values()].reduce((s, a) => s + a.topups, 0),
        charged: [...this.accounts.values()].reduce((s, a) => s + a.dd, 0) + [...this.sessions.values()].reduce((s, x) => s + x.charged, 0),
        refunded: [...this.accounts.values()].reduce((s, a) => s + a.refunds, 0),
        balances,
        sessions: this.sessions.size,
        ledgerEntries: [...this.ledgers.values()].reduce((s, l) => s + l.rows.size, 0),
      },
      history: this.history.slice(-this.historyTail),
      related: this.failure ? this.relatedHistory(this.failure.message) : [],
      tableName: this.tableName,
      avoidKnownBugs: this.avoid,
    };
  }

  private relatedHistory(message: string): HistoryEntry[] {
    const tokens = new Set<string>();
    for (const m of message.matchAll(/\b(ses_[A-Za-z0-9_-]{24}|(?:pre|post)-\d+|[trudlfe]-c\d+-\d+)\b/g)) tokens.add(m[1]!);
    for (const token of [...tokens]) {
      const s = this.sessions.get(token);
      if (s) tokens.add(s.reserveRid);
    }
    if (tokens.size === 0) return [];
    const list = [...tokens];
    return this.history.filter((h) => list.some((t) => h.text.includes(t))).slice(-this.historyTail);
  }

  private async balances() {
    let sum = 0;
    for (const a of this.accounts.values()) {
      const { Item } = await this.audit.send(new GetCommand({ TableName: this.tableName, Key: { pk: `ACC#${a.id}`, sk: 'ACCOUNT' }, ConsistentRead: true }));
      sum += Item?.balance ?? 0;
    }
    return sum;
  }

  /** Faults off; resolve what was left in doubt; expire everything; the final audit. */
  private async endPhase(clients: Client[]) {
    this.currentOp = this.ops;
    const trace: string[] = [];
    const retry = async (req: Req) => {
      const answer = await this.send(null, req.method, req.path, req.text, { faults: false, giveUp: false, label: 'end', trace });
      this.record(-1, `end: retry of in-doubt ${req.kind} ${req.path} ${req.text} → ${answer!.status} ${JSON.stringify(answer!.body).slice(0, 200)}`);
      this.onAnswer(req, answer!);
    };
    // Top-ups and refunds are single transactions: retrying them late is what a client does.
    for (const req of [...this.reqs.values()]) if (req.inDoubt && (req.kind === 'topup' || req.kind === 'refund')) { this.count('end: retried in doubt'); await retry(req); }
    if (this.avoid) {
      for (const req of [...this.reqs.values()]) if (req.inDoubt && (req.kind === 'reserve' || req.kind === 'dd')) { this.count('end: retried in doubt'); await retry(req); }
    }
    // Past every validity, then sweep until nothing more expires.
    this.advanceMs((VALIDITY_SECONDS + 60) * 1000);
    let runs = 0;
    for (;;) {
      const reply = await this.runtime.sweep(null);
      if (!reply.summary) this.fail('e: sweep failed', `the end-phase sweep failed with no fault injected: ${reply.error}`);
      const summary = reply.summary!;
      this.record(-1, `end: sweep ${JSON.stringify(summary)}`);
      this.count('end: sweep runs');
      if (summary.expired === 0) break;
      if (++runs > 40) this.fail('c: sweep', 'the sweep kept expiring sessions after 40 runs');
    }
    await this.runtime.idle();
    // Session steps given up: the sweep rolled them forward; retrying them now must answer
    // what was recorded (or that the session is finished).
    for (const req of [...this.reqs.values()]) {
      if (req.inDoubt && req.sid) { this.count('end: retried in doubt'); await retry(req); }
    }
    await this.runtime.idle();
    void clients;
    await this.fullAudit(true);
    await this.finalSessionChecks();
  }

  // ------------------------------------------------------------------ client services

  /** What clients use to act on the shared simulation. */
  readonly api = {
    now: () => this.nowMs,
    advance: (seconds: number) => { this.advanceMs(seconds * 1000); },
    accounts: () => [...this.accounts.values()],
    sessions: this.sessions,
    reqs: this.reqs,
    avoid: () => this.avoid,
    tolerated: (bug: keyof typeof KNOWN_BUGS) => this.tolerated(bug),
    sampleAccountCheck: () => ++this.accountCheckTick % this.accountCheckEvery === 0,
    count: (name: string) => this.count(name),
    record: (client: number, text: string, op?: number) => this.record(client, text, op),
    fail: (check: string, message: string): never => this.fail(check, message),
    newReq: (kind: Kind, accountId: string, rid: string, path: string, body: Record<string, unknown>, sid?: string) => this.newReq(kind, accountId, rid, path, body, sid),
    send: (client: Client, method: 'GET' | 'POST' | 'PUT', path: string, text: string | undefined, opts: { faults: boolean; giveUp: boolean; label: string; trace: string[] }) => this.send(client, method, path, text, opts),
    onAnswer: (req: Req, answer: Answer) => this.onAnswer(req, answer),
    markInDoubt: (req: Req) => this.markInDoubt(req),
    checkAccountItem: (accountId: string, what: string) => this.checkAccountItem(accountId, what),
    checkProblemShape: (answer: Answer, what: string) => this.checkProblemShape(answer, what),
    sessionFor: (sid: string, req: Req, serviceId: ServiceId) => this.sessionFor(sid, req, serviceId),
    sweep: async (client: Client, trace: string[]) => {
      const reply = await this.runtime.sweep(this.faultsOn ? drawPlan(client.rng, this.faultRate * 2, { avoidKnownBugs: this.avoid }) : null);
      this.noteInjected(reply.injected);
      const faults = reply.injected.length ? `[${reply.injected.join(',')}]` : '';
      if (reply.summary) {
        this.count('sweep: expired', reply.summary.expired ?? 0);
        trace.push(`${JSON.stringify(reply.summary)}${faults}`);
      } else {
        this.count('sweep: failed run');
        trace.push(`failed: ${reply.error?.split(':')[0]}${faults}`);
        if (reply.injected.length === 0) this.fail('e: sweep failed', `the interim sweep failed with no fault injected: ${reply.error}`);
      }
    },
  };
}

// ------------------------------------------------------------------------------ clients

type Api = Simulation['api'];

class Client {
  private n = 0;
  /** Sessions this client believes active, and finished ones it may refund. */
  private active: SessionModel[] = [];
  private finished: SessionModel[] = [];
  /** Recent requests of this client, for duplicates and requestId reuse. */
  private recent: Req[] = [];
  private multi: string | null = null;
  /** What the current operation is sending, for the history when a check throws mid-way. */
  private doing: string | null = null;
  readonly api: Api;

  constructor(sim: Simulation, readonly index: number, readonly rng: Rng) {
    this.api = sim.api;
  }

  private rid(prefix: string) {
    return `${prefix}-c${this.index}-${++this.n}`;
  }

  private pickAccount(): AccountModel {
    const all = this.api.accounts();
    const rich = all.filter((a) => !a.poor);
    return this.rng.chance(0.8) && rich.length ? this.rng.pick(rich) : this.rng.pick(all);
  }

  private remember(req: Req) {
    this.recent.push(req);
    if (this.recent.length > 60) this.recent.shift();
  }

  private refreshLists() {
    const stillActive: SessionModel[] = [];
    for (const s of this.active) {
      if (s.state === 'active' || s.state === 'unknown') stillActive.push(s);
      else this.finished.push(s);
    }
    this.active = stillActive;
    if (this.finished.length > 30) this.finished.splice(0, this.finished.length - 30);
  }

  async step(op: number): Promise<void> {
    // Simulated time passes a little with every operation.
    this.api.advance(this.rng.int(4));
    this.refreshLists();
    const weights = {
      topup: 6, reserve: this.active.length >= 4 ? 2 : 14, update: 24, debit: 10, release: 3, refund: 4, dd: 8,
      sweep: 1, read: 6, duplicate: 5, concurrent: 3, outOfOrder: 3, reuse: 3, clock: 1.5,
    };
    let kind = this.rng.weighted(weights);
    if ((kind === 'update' || kind === 'debit' || kind === 'release') && this.active.length === 0) kind = 'reserve';
    const trace: string[] = [];
    let text = kind as string;
    this.doing = null;
    try {
      switch (kind) {
        case 'topup': text = await this.topup(trace); break;
        case 'reserve': text = await this.reserve(trace); break;
        case 'update': text = await this.update(trace); break;
        case 'debit': text = await this.debit(trace); break;
        case 'release': text = await this.release(trace); break;
        case 'refund': text = await this.refund(trace); break;
        case 'dd': text = await this.directDebit(trace); break;
        case 'sweep': await this.api.sweep(this, trace); text = 'interim-sweep'; break;
        case 'read': text = await this.read(trace); break;
        case 'duplicate': text = await this.duplicate(trace); break;
        case 'concurrent': text = await this.concurrent(trace); break;
        case 'outOfOrder': text = await this.outOfOrder(trace); break;
        case 'reuse': text = await this.reuse(trace); break;
        case 'clock': {
          const seconds = this.rng.int(401);
          this.api.advance(seconds);
          text = `clock +${seconds}s`;
          break;
        }
      }
      this.api.count(`op: ${kind}`);
    } finally {
      this.api.record(this.index, `${text === kind && this.doing ? `${kind}: ${this.doing}` : text} → ${trace.join(' ')}`, op);
    }
  }

  /** Sends a state-changing request with retries and checks the answer. Null when given up. */
  private async exchange(req: Req, trace: string[], opts: { faults?: boolean; giveUp?: boolean } = {}): Promise<Answer | null> {
    const avoid = this.api.avoid();
    const giveUpKinds: Kind[] = avoid ? ['topup', 'update', 'debit', 'release', 'refund'] : ['topup', 'update', 'debit', 'release', 'refund', 'reserve', 'dd'];
    this.doing ??= this.describe(req);
    const answer = await this.api.send(this, req.method, req.path, req.text, {
      faults: opts.faults ?? true,
      giveUp: opts.giveUp ?? giveUpKinds.includes(req.kind),
      label: req.rid,
      trace,
    });
    if (!answer) {
      this.api.markInDoubt(req);
      return null;
    }
    this.api.onAnswer(req, answer);
    if ((answer.status < 300 || answer.status === 402) && this.api.sampleAccountCheck()) await this.api.checkAccountItem(req.accountId, `after ${req.kind} ${req.rid}`);
    return answer;
  }

  private describe(req: Req) {
    return `${req.kind} POST ${req.path} ${req.text}`;
  }

  // ------------------------------------------------------------------ operations

  private async topup(trace: string[]) {
    const a = this.pickAccount();
    const rid = this.rid('t');
    const amount = a.poor ? this.rng.range(5, 60) : this.rng.range(100, 3000);
    const req = this.api.newReq('topup', a.id, rid, `/accounts/${a.id}/topup`, { requestId: rid, amount });
    req.amount = amount;
    await this.exchange(req, trace);
    this.remember(req);
    return this.describe(req);
  }

  private requestedFor(serviceId: ServiceId): Record<string, number> {
    switch (serviceId) {
      case 'voice': return this.rng.chance(0.25) ? { amount: this.rng.range(2, 30) } : { units: this.rng.range(30, 900) };
      case 'sms': return { units: this.rng.range(1, 5) };
      case 'wallet': return this.rng.chance(0.3) ? { amount: this.rng.range(5, 300) } : { units: this.rng.range(5, 300) };
    }
  }

  private reserveReq(): Req {
    const a = this.pickAccount();
    const serviceId = this.rng.weighted({ voice: 6, sms: 2, wallet: 2 } as Record<ServiceId, number>);
    const rid = this.rid('r');
    if (!this.multi || this.rng.chance(0.5)) this.multi = this.rng.chance(0.2) ? `ms-c${this.index}-${this.n}` : null;
    const body: Record<string, unknown> = { requestId: rid, accountId: a.id, clientId: `client-${this.index}`, serviceId, requested: this.requestedFor(serviceId), ...(this.multi ? { multiSessionId: this.multi } : {}) };
    return this.api.newReq('reserve', a.id, rid, '/sessions', body);
  }

  private adopt(req: Req) {
    if (req.first?.status !== 201) return;
    const s = this.api.sessions.get(sessionIdFor(req.rid));
    if (s && s.client === -1) {
      s.client = this.index;
      this.active.push(s);
    }
  }

  private async reserve(trace: string[]) {
    const req = this.reserveReq();
    await this.exchange(req, trace);
    this.adopt(req);
    this.remember(req);
    return this.describe(req);
  }

  private usedFor(s: SessionModel): number {
    const granted = s.grantedUnits;
    if (granted > 0 && this.rng.chance(0.1)) return granted + this.rng.range(1, 120); // reported beyond the grant
    if (granted > 0) return this.rng.int(granted + 1);
    return this.rng.int(3);
  }

  private stepReq(kind: 'update' | 'debit' | 'release', s: SessionModel): Req {
    const rid = this.rid(kind === 'release' ? 'l' : kind[0]!);
    let body: Record<string, unknown>;
    if (kind === 'release') body = { requestId: rid, ...(this.rng.chance(0.5) ? { reason: 'call dropped' } : {}) };
    else {
      body = { requestId: rid, used: { units: this.usedFor(s) } };
      if (kind === 'update' && this.rng.chance(0.85)) body.requested = this.requestedFor(s.serviceId);
    }
    const path = `/sessions/${s.sid}/${kind === 'release' ? 'refund' : kind}`;
    const req = this.api.newReq(kind, s.accountId, rid, path, body, s.sid);
    if (kind === 'update') s.updates.push(rid);
    return req;
  }

  private async sessionStep(kind: 'update' | 'debit' | 'release', trace: string[]) {
    const s = this.rng.pick(this.active);
    const req = this.stepReq(kind, s);
    const answer = await this.exchange(req, trace);
    if (!answer && kind !== 'update') s.state = 'abandoned'; // a client that gave up the last word drops the session
    if (!answer && kind === 'update' && this.rng.chance(0.5)) s.state = 'abandoned'; // ...or sometimes just walks away
    if (answer?.status === 402 && kind === 'update') {
      // No credit left: terminate (reporting nothing more).
      const final = this.stepReq('debit', s);
      final.body = { requestId: final.rid, used: { units: 0 } };
      final.text = JSON.stringify(final.body);
      trace.push('→ terminate:');
      await this.exchange(final, trace);
      this.remember(final);
    }
    this.remember(req);
    return this.describe(req);
  }

  private update(trace: string[]) { return this.sessionStep('update', trace); }
  private debit(trace: string[]) { return this.sessionStep('debit', trace); }
  private release(trace: string[]) { return this.sessionStep('release', trace); }

  private async refund(trace: string[]) {
    const candidates = this.finished.filter((s) => s.charged - s.refunded > 0 && ['closed', 'released', 'expired', 'finished'].includes(s.state));
    if (candidates.length === 0) return this.directDebit(trace);
    const s = this.rng.pick(candidates);
    const left = s.charged - s.refunded;
    const rid = this.rid('f');
    const amount = this.rng.chance(0.1) ? left + this.rng.range(1, 5) : this.rng.range(1, left);
    const req = this.api.newReq('refund', s.accountId, rid, `/sessions/${s.sid}/refund`, { requestId: rid, amount, reason: 'goodwill' }, s.sid);
    req.amount = amount;
    const answer = await this.exchange(req, trace);
    if (answer && amount > left && s.inDoubt.size === 0 && answer.status !== 409) this.api.fail('refund', `refund of ${amount} > refundable ${left} answered ${answer.status}`);
    this.remember(req);
    return this.describe(req);
  }

  private ddReq(): Req {
    const a = this.pickAccount();
    const rid = this.rid('e');
    const sms = this.rng.chance(0.6);
    const units = sms ? this.rng.range(1, 4) : this.rng.range(5, 200);
    const body = sms
      ? { requestId: rid, accountId: a.id, clientId: `smsc-${this.index}`, serviceId: 'sms', units }
      : { requestId: rid, accountId: a.id, clientId: `app-${this.index}`, serviceId: 'wallet', amount: units };
    const req = this.api.newReq('dd', a.id, rid, '/debits', body);
    req.units = units;
    req.amount = priceOf(sms ? 'sms' : 'wallet', units);
    return req;
  }

  private async directDebit(trace: string[]) {
    const req = this.ddReq();
    await this.exchange(req, trace);
    this.remember(req);
    return this.describe(req);
  }

  private async read(trace: string[]) {
    const choice = this.rng.int(5);
    const a = this.pickAccount();
    const s = this.active.length || this.finished.length ? this.rng.pick([...this.active, ...this.finished]) : null;
    let path = `/accounts/${a.id}`;
    if (choice === 1 && s) path = `/sessions/${s.sid}`;
    if (choice === 2) path = `/accounts/${a.id}/ledger?limit=${this.rng.range(1, 50)}`;
    if (choice === 3 && s) path = `/multi-sessions/${s.sid}`;
    if (choice === 4) path = `/services/${this.rng.pick(['voice', 'sms', 'wallet'])}`;
    const answer = await this.api.send(this, 'GET', path, undefined, { faults: true, giveUp: true, label: `GET ${path}`, trace });
    if (!answer) return `GET ${path}`;
    this.api.checkProblemShape(answer, `GET ${path}`);
    if (answer.status !== 200) this.api.fail('unexpected answer', `GET ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
    const b = answer.body;
    if (path.startsWith('/accounts/') && !path.includes('ledger')) {
      if (b.available !== b.balance - b.reserved + b.creditLimit || b.available < 0) this.api.fail('b: account arithmetic', `GET ${path}: ${JSON.stringify(b)}`);
    } else if (path.includes('ledger')) {
      if (!Array.isArray(b.entries) || b.entries.some((e: any) => !Number.isSafeInteger(e.amount))) this.api.fail('unexpected answer', `GET ${path}: ${JSON.stringify(b).slice(0, 300)}`);
    } else if (path.startsWith('/sessions/')) {
      if (!['active', 'closed', 'expired', 'released'].includes(b.state) || b.charged.amount < s!.charged) this.api.fail('unexpected answer', `GET ${path}: ${JSON.stringify(b)} (answers said charged ${s!.charged})`);
    } else if (path.startsWith('/multi-sessions/')) {
      if (!Array.isArray(b.sessions) || b.sessions.length < 1 || !Number.isSafeInteger(b.charged?.amount)) this.api.fail('unexpected answer', `GET ${path}: ${JSON.stringify(b).slice(0, 300)}`);
    }
    return `GET ${path}`;
  }

  /** Resends a past request (same requestId and body): it must answer as it first did. */
  private async duplicate(trace: string[]) {
    const avoid = this.api.avoid();
    const candidates = this.recent;
    if (candidates.length === 0) return this.topup(trace);
    const req = this.rng.pick(candidates);
    trace.push('dup:');
    // KNOWN_BUGS.reserveRetryAfterCrashLeaksHold: a late duplicate reserve takes a fresh hold that a failure strands.
    const faults = !(avoid && req.kind === 'reserve');
    await this.exchange(req, trace, { faults, giveUp: false });
    if (req.kind === 'reserve') this.adopt(req);
    return `duplicate of ${this.describe(req)}`;
  }

  /** The same new request delivered two or three times at once. */
  private async concurrent(trace: string[]) {
    const which = this.rng.int(4);
    let req: Req;
    if (which === 0 && this.active.length) req = this.stepReq(this.rng.chance(0.7) ? 'update' : 'debit', this.rng.pick(this.active));
    else if (which === 1) req = this.ddReq();
    else if (which === 2) {
      const a = this.pickAccount();
      const rid = this.rid('t');
      req = this.api.newReq('topup', a.id, rid, `/accounts/${a.id}/topup`, { requestId: rid, amount: this.rng.range(10, 500) });
      req.amount = req.body.amount as number;
    } else req = this.reserveReq();
    const copies = this.rng.range(2, 3);
    const traces = Array.from({ length: copies }, () => [] as string[]);
    await Promise.all(traces.map((t) => this.exchange(req, t, { giveUp: false })));
    trace.push(...traces.map((t, i) => `copy${i + 1}: ${t.join(' ')}`));
    if (req.kind === 'reserve') this.adopt(req);
    if (req.sid && (req.kind === 'debit') && req.first) this.refreshLists();
    this.remember(req);
    return `${copies} concurrent copies of ${this.describe(req)}`;
  }

  /** An older update of a session resent after newer ones: its original answer, nothing charged. */
  private async outOfOrder(trace: string[]) {
    const sessions = [...this.active, ...this.finished].filter((s) => s.updates.length >= 2);
    if (sessions.length === 0) return this.active.length ? this.update(trace) : this.reserve(trace);
    const s = this.rng.pick(sessions);
    const rid = s.updates[this.rng.int(s.updates.length - 1)]!;
    const req = this.api.reqs.get(rid)!;
    trace.push('out-of-order:');
    await this.exchange(req, trace, { giveUp: false });
    return `out-of-order resend of ${this.describe(req)}`;
  }

  /** A requestId used again with another body: 409 idempotency_conflict, nothing changes. */
  private async reuse(trace: string[]) {
    const avoid = this.api.avoid();
    const candidates = this.recent.filter((r) => r.first);
    if (candidates.length === 0) return this.directDebit(trace);
    const original = this.rng.pick(candidates);
    let path = original.path;
    const body: Record<string, unknown> = structuredClone(original.body);
    let faults = true;
    switch (original.kind) {
      case 'topup':
        if (this.rng.chance(0.3)) {
          // Cross-kind: the top-up's requestId on a direct debit.
          path = '/debits';
          Object.assign(body, { accountId: original.accountId, clientId: 'smsc-x', serviceId: 'sms', units: 1 });
          delete body.amount;
        } else body.amount = (body.amount as number) + 1;
        break;
      case 'dd':
        if (this.rng.chance(0.3)) { path = `/accounts/${original.accountId}/topup`; for (const k of Object.keys(body)) if (k !== 'requestId') delete body[k]; body.amount = 7; }
        else if ('units' in body) body.units = (body.units as number) + 1;
        else body.amount = (body.amount as number) + 1;
        break;
      case 'reserve': {
        const requested = body.requested as Record<string, number>;
        const k = Object.keys(requested)[0]!;
        requested[k] = requested[k]! + 1;
        faults = !avoid; // KNOWN_BUGS.reserveRetryAfterCrashLeaksHold
        break;
      }
      case 'update':
      case 'debit':
        body.used = { units: ((body.used as { units: number }).units) + 1 };
        break;
      case 'release':
      case 'refund':
        body.amount = ((body.amount as number | undefined) ?? 0) + 1;
        break;
    }
    const text = JSON.stringify(body);
    trace.push('reuse:');
    this.doing = `reuse of ${original.rid} on POST ${path} ${text}`;
    const answer = await this.api.send(this, 'POST', path, text, { faults, giveUp: false, label: `reuse ${original.rid}`, trace });
    this.api.checkProblemShape(answer!, `reuse ${path} ${text}`);
    const knownReserve = original.kind === 'reserve' && answer!.status === 402 && this.api.tolerated('lateReserveDuplicateRefused');
    if (!knownReserve && (answer!.status !== 409 || answer!.body?.code !== 'idempotency_conflict')) {
      this.api.fail('d: idempotency_conflict', `requestId ${original.rid} (first: ${original.kind} ${original.path} ${original.text} → ${original.first!.status}) reused on ${path} with ${text} answered ${answer!.status} ${JSON.stringify(answer!.body)}`);
    }
    if (this.api.sampleAccountCheck()) await this.api.checkAccountItem(original.accountId, `after reuse of ${original.rid}`);
    return `reuse of ${original.rid} on POST ${path} ${text}`;
  }
}

/** A stable short hash, for table names and labels. */
export function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 8);
}
