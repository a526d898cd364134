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
import { DUE_INDEX, DUE_SHARDS } from '../../functions/store/table.js';
import { Rng, splitmix32 } from './prng.js';
import { drawPlan, type FaultPlan } from './faults.js';
import { DirectDb, LambdaRuntime, ProcessRuntime, type DbClient, type Runtime, type RuntimeStats } from './runtime.js';
import type { Principle } from '../../functions/domain/parties.js';

// ----------------------------------------------------------------- payment principles

// The payment principles of multi-party sessions (seed 000), the model's own: written apart
// from functions/domain/parties.ts, so that a slip there is not copied into the oracle (until
// stop 27 the model imported those very functions, and a wrong split could never fail a run;
// review 14). Exact shares in BigInt; the cents left over go one each to the largest
// remainders, ties to the party listed first.
function apportionModel(amount: number, weights: number[]): number[] {
  const total = BigInt(weights.reduce((a, b) => a + b, 0));
  const exact = weights.map((w) => BigInt(amount) * BigInt(w));
  const parts = exact.map((e) => Number(e / total));
  const byRemainder = exact.map((e, i) => ({ i, r: e % total })).sort((a, b) => (a.r === b.r ? a.i - b.i : a.r > b.r ? -1 : 1));
  for (let left = amount - parts.reduce((a, b) => a + b, 0), k = 0; left > 0; left--, k++) parts[byRemainder[k]!.i]! += 1;
  return parts;
}

const weightsOf = (principle: Principle, ids: string[]) => ids.map((id) => (principle.type === 'shares' ? principle.shares[id]! : 1));

/** What each party pays of `amount`: the loser all of it, the initiator all of it, or by weights. */
function partyCharges(principle: Principle, ids: string[], amount: number, outcome?: { loser?: string }): number[] {
  if (principle.type === 'loser-pays') return ids.map((id) => (id === outcome?.loser ? amount : 0));
  if (principle.type === 'initiator-pays') return ids.map((_, i) => (i === 0 ? amount : 0));
  return apportionModel(amount, weightsOf(principle, ids));
}

/** A game ended without a final debit: loser-pays has no loser, and is split. */
const chargesWithoutOutcome = (principle: Principle, ids: string[], amount: number) =>
  partyCharges(principle.type === 'loser-pays' ? { type: 'split' } : principle, ids, amount);

/** The most each party can owe of at most `max`: what the game holds of it (the ceiling of its exact share). */
function mostPossibleShares(principle: Principle, ids: string[], max: number): number[] {
  if (principle.type === 'loser-pays') return ids.map(() => max);
  if (principle.type === 'initiator-pays') return ids.map((_, i) => (i === 0 ? max : 0));
  const weights = weightsOf(principle, ids);
  const total = BigInt(weights.reduce((a, b) => a + b, 0));
  return weights.map((w) => Number((BigInt(max) * BigInt(w) + total - 1n) / total));
}

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
   * The store's clock: 'frozen' (default) moves only between operations, so concurrent
   * requests read the same millisecond; 'realistic' moves 1 ms at every read, so no two
   * requests share a timestamp.
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
 * Bugs the simulator found in functions/ and that are not fixed yet, by name, each with a
 * regression test in test/sim/regressions.test.ts (`it.fails` while it is open). With
 * `avoidKnownBugs` the workload leaves out what triggers them (look for the bug's name at
 * the place that avoids it: `this.avoid` / `plan.avoidKnownBugs`), and `tolerated(name)`
 * counts a symptom instead of failing, so the rest can still be checked. Once a bug is fixed
 * it leaves this list, and its avoidance and tolerance leave the simulator.
 *
 * Every bug found so far is fixed (regressions.test.ts keeps each as a plain `it`).
 */
export const KNOWN_BUGS: Readonly<Record<string, string>> = {};

const FAULTY_ATTEMPTS = 3;
// In the future: notifications carry a TTL (90 days after they are written, in simulated
// time) that DynamoDB Local enforces against the real clock.
const START = Date.parse('2036-01-01T00:00:00.000Z');
const NOTIFICATION_TTL_MS = 90 * 86_400_000;
const VALIDITY_SECONDS = 300;

// -------------------------------------------------------------------------------- model

/**
 * Writes of one setting (a PUT or PATCH) that may overlap: retries make their windows long,
 * and the one that lands last wins, which need not be the one sent last. So an answer must
 * show exactly what its request sent only if the request ran alone, and a later read may check
 * the setting only while none is in flight and none overlapped since one last ran alone.
 */
export class OverlappingWrites {
  private inFlight = 0;
  private started = 0;
  private raced = false;

  /** Sends one write; `alone`: no other overlapped it, so its answer shows what it sent. */
  async run<T>(send: () => Promise<T>): Promise<{ result: T; alone: boolean }> {
    const first = this.inFlight === 0;
    if (!first) this.raced = true;
    const started = ++this.started;
    this.inFlight++;
    let result: T;
    try {
      result = await send();
    } finally {
      this.inFlight--;
    }
    const alone = first && this.started === started;
    if (alone) this.raced = false;
    return { result, alone };
  }

  /** Taken when a read starts; `settled(mark)` when it ends: may the read check the setting? */
  mark(): { inFlight: number; started: number } {
    return { inFlight: this.inFlight, started: this.started };
  }

  settled(mark: { inFlight: number; started: number }): boolean {
    return mark.inFlight === 0 && this.inFlight === 0 && this.started === mark.started && !this.raced;
  }
}

type Kind = 'topup' | 'reserve' | 'update' | 'debit' | 'release' | 'refund' | 'dd' | 'recharge' | 'propose' | 'agree';

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
  /**
   * Money the request is about (top-up amount, refund amount, expected event charge, manual
   * recharge amount; undefined for a recharge that names none). For requests routed to a
   * service account, an amount in its units.
   */
  amount?: number;
  units?: number;
  /** Manual recharges: the service account recharged (`accountId` is its owner, who pays). */
  sa?: string;
  /** Suspensions sent, over the accounts it involves, when it was first sent, and whether one held then (see mayBeInactive). */
  suspensionsAtSend?: number;
  suspendedAtSend?: boolean;
  /** The simulated clock when it was first sent (see checkNotExpired). */
  sentAtMs?: number;
  /** Sent while a suspension of an account it involves was answered and held: it must be refused (see suspend). */
  mustBeRefused?: boolean;
}

/**
 * What the model knows of a session: 'finished' = a request learned it is closed or expired
 * (409 session_closed, or a release answered as a refund); 'abandoned' = its client walked
 * away after giving up a request (the session may well still be active).
 */
type SessionState = 'pending' | 'active' | 'closed' | 'released' | 'expired' | 'finished' | 'abandoned' | 'unknown';

/**
 * A multi-party session (seed 000) as its answers describe it. The model follows the
 * session's arithmetic exactly (usage, grant, each party's hold) for as long as every step
 * was answered; a client that gives up a step walks away from the session (its answers may
 * come late, at the end).
 */
interface PartyModel {
  ids: string[];
  principle: Principle;
  /** Parties whose agreement was answered. */
  agreed: Set<string>;
  /** Units used and granted in total (the session's hold.usedUnits / grantedUnits). */
  usedUnits: number;
  grantedUnits: number;
  /** Each party's hold, as the last answer showed it. */
  holds: number[];
  /** Each party's charge, from the final debit's answer (checked against the principle). */
  charged?: number[];
  /** What refunds gave back to each party, from their answers. */
  refunded?: number[];
}

interface SessionModel {
  sid: string;
  /** The account charged: the owner's service account when the service is routed to one. */
  accountId: string;
  /** Charged to a service account: amounts are in its units, one unit per unit. */
  routed: boolean;
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
  /** The multiSessionId its reserve named; none: its own id names its multi-session. */
  multiSessionId?: string;
  /** Multi-party sessions: the parties and what the model knows of their money. */
  party?: PartyModel;
}

interface AccountModel {
  id: string;
  kind: 'prepaid' | 'postpaid';
  creditLimit: number;
  poor: boolean;
  currency: Currency;
  /** 'money' for accounts; a service account's unit otherwise. */
  unit: 'money' | 'seconds' | 'events' | 'kilobytes';
  /** Service accounts (`<owner>~<classification>`): the owner and the classification (a serviceId). */
  owner?: string;
  classification?: ServiceId;
  /** Service accounts: `amount` of the owner's money buys `units` (never changed after setup). */
  rate?: { amount: number; units: number };
  /** Service accounts: every rechargeAmount and onEmpty it ever had (automatic recharges and 402s may use any). */
  rechargeAmounts: Set<number>;
  onEmpty: Set<string>;
  /** Service accounts: its settings as last sent (a PUT changes them), and the PUTs. */
  settings?: Record<string, unknown>;
  puts: OverlappingWrites;
  /** Owners: classification → the service account that pays for that service. */
  routes: Map<string, string>;
  /** Every account ever named as a sponsor of this one; the list last sent; the PATCHes of it. */
  sponsorsEver: Set<string>;
  /** The largest maxTransfer each sponsor was ever given here (Infinity: once named without one). */
  sponsorCapEver: Map<string, number>;
  sponsors: Array<{ accountId: string; priority: number; maxTransfer?: number }>;
  sponsorPatches: OverlappingWrites;
  /** Answered manual recharges (owners), and how many were already found in the ledger. */
  confirmedRecharges: Req[];
  verifiedRecharges: number;
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
  /** Attached accounts (seed 002): the main account that pays for it. */
  mainAccountId?: string;
  /**
   * Attached accounts with a consumption limit: every limit it was ever given (a PATCH binds
   * the next grant; one in flight may already bind), the last sent, the PATCHes of it.
   */
  limitsEver: number[];
  limit?: number;
  limitPatches: OverlappingWrites;
  /** Main accounts: their attached accounts. */
  members: string[];
  /**
   * Suspensions (PATCH status) sent of this account, and whether one may hold now: from
   * before the suspension is sent until its resumption is answered.
   */
  suspensions?: number;
  suspended?: boolean;
  /**
   * The account's validUntil (API.md), when it has one: from then on it authorizes nothing new,
   * nor do its attached accounts (their items carry it) or its service accounts.
   */
  validUntilMs?: number;
}

type Currency = 'EUR' | 'USD';
type ServiceId = 'voice' | 'sms' | 'wallet' | 'data';
const SERVICES: Record<ServiceId, { unit: string; amount: number; per: number; body: Record<string, unknown> }> = {
  data: { unit: 'kilobytes', amount: 100, per: 1024, body: { unit: 'kilobytes', price: { amount: 100, per: 1024 }, validitySeconds: VALIDITY_SECONDS, interimIntervalSeconds: 30 } },
  // Voice dictates a longer interval once a session has reported (seed 001's 30 s → 90 s).
  voice: { unit: 'seconds', amount: 2, per: 60, body: { unit: 'seconds', price: { amount: 2, per: 60 }, validitySeconds: VALIDITY_SECONDS, interimIntervalSeconds: 30, establishedInterimIntervalSeconds: 90 } },
  sms: { unit: 'events', amount: 5, per: 1, body: { unit: 'events', price: { amount: 5, per: 1 }, validitySeconds: VALIDITY_SECONDS, interimIntervalSeconds: 30 } },
  wallet: { unit: 'money', amount: 1, per: 1, body: { unit: 'money', validitySeconds: VALIDITY_SECONDS, interimIntervalSeconds: 60 } },
};
/** The interim interval a session of the service is told: before its first report, and after. */
const intervalOf = (serviceId: ServiceId, reported: boolean) => {
  const body = SERVICES[serviceId].body as { interimIntervalSeconds: number; establishedInterimIntervalSeconds?: number };
  return reported ? body.establishedInterimIntervalSeconds ?? body.interimIntervalSeconds : body.interimIntervalSeconds;
};
const priceOf = (serviceId: ServiceId, units: number) => Math.ceil(units / SERVICES[serviceId].per) * SERVICES[serviceId].amount;
/** What `units` cost where they are charged: a service account pays one unit per unit. */
const costOf = (serviceId: ServiceId, units: number, routed: boolean) => (routed ? units : priceOf(serviceId, units));

/**
 * Service accounts made at setup: classification → unit, rate and the settings they start
 * with. Which accounts get which: see setup().
 */
const SERVICE_ACCOUNTS: Partial<Record<ServiceId, { unit: AccountModel['unit']; rate: { amount: number; units: number }; settings: Record<string, unknown> }>> = {
  data: { unit: 'kilobytes', rate: { amount: 100, units: 1024 }, settings: { priority: 1, minimumLevel: 2048, rechargeAmount: 200, onEmpty: 'redirect', redirectUrl: 'https://shop.example/data' } },
  sms: { unit: 'events', rate: { amount: 4, units: 1 }, settings: { priority: 2, minimumLevel: 5, rechargeAmount: 40, schedule: { every: 'day', at: 1 }, onEmpty: 'deny' } },
  voice: { unit: 'seconds', rate: { amount: 2, units: 60 }, settings: { priority: 3, minimumLevel: 600, rechargeAmount: 30, onEmpty: 'restrict' } },
};
const unitsBought = (amount: number, rate: { amount: number; units: number }) => Math.floor((amount * rate.units) / rate.amount);
/** What a recharge of `amount` costs the owner: the units it buys, rounded up to the cent; the rest of the amount is not taken. */
const rechargeCost = (amount: number, rate: { amount: number; units: number }) => Math.ceil((unitsBought(amount, rate) * rate.amount) / rate.units);
/** Whether `paid` is what a recharge of one of the service account's rechargeAmounts costs. */
const paysARechargeAmount = (sa: AccountModel, paid: number) => [...sa.rechargeAmounts].some((amount) => rechargeCost(amount, sa.rate!) === paid);
const ownerOf = (accountId: string) => accountId.split('~')[0]!;

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
  units?: number;
  counterparty?: string;
  /** A lateral allotment's other side. */
  pairEntryId?: string;
}

interface SessionLedger {
  charged: number;
  held: number;
  refunded: number;
  /** The expiries that wrote entries of the session (their requestIds): one at most. */
  expiredBy: Set<string>;
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
  /**
   * Recharges and sponsor transfers (entries with a counterparty, written by one transaction
   * with the counterparty's entry) by entryId; `unpaired` are those added since the last
   * audit, still to be matched with the other side; `twice` are entryIds seen under two keys.
   */
  transfers = new Map<string, LedgerRow>();
  unpaired: LedgerRow[] = [];
  twice: LedgerRow[] = [];
  /** Sums of those entries: recharges (money out of an owner, units into a service account), sponsor transfers in and out. */
  recharged = 0;
  /**
   * Allotments (seed 002): money moved between a main account and an attached one, each by
   * one transaction with an entry on both sides (`allot:<member>:<seq>:main|member`). Kept
   * apart from `transfers` (they notify nobody); also pushed on `unpaired` for checkTransfers.
   * `allotted` is their sum here: negative on a main account, what a member holds net.
   */
  allotments = new Map<string, LedgerRow>();
  allotted = 0;
  sponsorsReceived = 0;
  sponsorIn = 0;
  sponsorOut = 0;
  /** Entries at or after this sk prefix may still appear: the next read starts there. */
  from = '0';
  unknown: LedgerRow[] = [];

  session(sid: string): SessionLedger {
    let s = this.sessions.get(sid);
    if (!s) this.sessions.set(sid, (s = { charged: 0, held: 0, refunded: 0, expiredBy: new Set() }));
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
    if (row.type === 'allotment') {
      if (this.allotments.has(row.entryId)) this.twice.push(row);
      this.allotments.set(row.entryId, row);
      this.unpaired.push(row);
      this.allotted += row.amount;
    } else if (row.type === 'recharge' || row.type === 'sponsor_transfer') {
      if (this.transfers.has(row.entryId)) this.twice.push(row);
      this.transfers.set(row.entryId, row);
      this.unpaired.push(row);
      if (row.type === 'recharge') this.recharged += row.amount;
      else if (row.amount >= 0) { this.sponsorIn += row.amount; this.sponsorsReceived++; }
      else this.sponsorOut -= row.amount;
    } else if (row.sessionId) {
      const s = this.session(row.sessionId);
      // A step's one entry is net: what it charged (an expiry's too, for a party) and how
      // the reservation moved.
      if (row.type === 'refund') s.refunded += row.amount;
      else { s.charged -= row.amount; s.held += row.reservedDelta; }
      // An expiry writes one entry per account, under the expiry's requestId: `expire`, or
      // `debit` where it charged a party's usage.
      if (row.type === 'expire' || row.requestId?.startsWith('~expire:')) s.expiredBy.add(row.requestId ?? row.entryId);
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
  /** Sessions found expired at the final audit, by the account their session_expired goes to, with the expiry's time. */
  private expiredSessions = new Map<string, Map<string, string>>();
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
    this.realisticClock = (options.clock ?? 'frozen') === 'realistic';
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
  private async send(client: Client | null, method: 'GET' | 'POST' | 'PUT' | 'PATCH', path: string, text: string | undefined,
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
      // Throttling, conflicts and timeouts are the database's: a retryable 503. A 500 says
      // the handler failed, which only a handler dying in the middle may cause here.
      if (answer.status === 500 && !ctx.injected.some((fault) => fault.startsWith('die-between-writes'))) {
        this.fail('e: 500 for a transient fault', `${method} ${path} ${text ?? ''} answered 500 after ${faults}: ${JSON.stringify(answer.body)} ${errs}`);
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

  /** One run of a scheduled function (the interim sweep, the recharge trigger) for a client, with faults drawn as for a request. */
  private async runScheduled(name: 'sweep' | 'trigger', client: Client, trace: string[]) {
    const plan = this.faultsOn ? drawPlan(client.rng, this.faultRate * 2, { avoidKnownBugs: this.avoid }) : null;
    const reply = await (name === 'sweep' ? this.runtime.sweep(plan) : this.runtime.trigger(plan));
    this.noteInjected(reply.injected);
    const faults = reply.injected.length ? `[${reply.injected.join(',')}]` : '';
    if (reply.summary) {
      if (name === 'sweep') this.count('sweep: expired', reply.summary.expired ?? 0);
      else {
        this.count('trigger: recharged', reply.summary.recharged ?? 0);
        this.count('trigger: failed recharges', reply.summary.failed ?? 0);
      }
      trace.push(`${JSON.stringify(reply.summary)}${faults}`);
    } else {
      this.count(`${name}: failed run`);
      trace.push(`failed: ${reply.error?.split(':')[0]}${faults}`);
      const what = name === 'sweep' ? 'the interim sweep' : 'the recharge trigger';
      if (reply.injected.length === 0) this.fail(`e: ${name} failed`, `${what} failed with no fault injected: ${reply.error}`);
    }
  }

  /** In avoid mode, a known bug's symptom is counted instead of failing the run. */
  private tolerated(bug: keyof typeof KNOWN_BUGS): boolean {
    if (!this.avoid) return false;
    this.count(`known bug tolerated: ${bug}`);
    return true;
  }

  private isSuccess(kind: Kind, answer: Answer) {
    // An update's 402 and the last agreement's 402 are recorded on the session: repeats answer
    // them; so are their 403s (a suspended account: the update's usage is charged all the same).
    return (answer.status >= 200 && answer.status < 300) || ((kind === 'update' || kind === 'agree') && (answer.status === 402 || answer.status === 403));
  }

  private sameAnswer(a: Answer, b: Answer): boolean {
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
        if (!this.sameAnswer(req.first, answer)) {
          this.fail('d: replay differs', `${what}: first answer ${req.first.status} ${JSON.stringify(req.first.body)}, now ${answer.status} ${JSON.stringify(answer.body)}`);
        }
        return;
      }
      req.first = answer;
      if (req.mustBeRefused) this.fail('b: suspended account authorized', `${what}: ${answer.status} ${JSON.stringify(answer.body)} while a suspension it involves held (answered, not yet lifted)`);
      this.checkNotExpired(req, answer, what);
      this.applyEffect(req, answer, what);
      return;
    }
    if (req.first) {
      // A kept refusal is answered again as it was; anything else after a first answer differs.
      if (!this.sameAnswer(req.first, answer)) {
        this.fail('d: replay differs', `${what}: first answer ${req.first.status} ${JSON.stringify(req.first.body)}, now ${answer.status} ${JSON.stringify(answer.body)}`);
      }
      return;
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
      recharge: [[402, 'insufficient_credit'], [400, 'validation_failed']],
      propose: [],
      // The sweep expires a proposal nobody finished agreeing to.
      agree: [[409, 'session_closed']],
    };
    // A suspended account (or its main account, or a party) authorizes nothing new.
    const inactive = answer.status === 403 && code === 'account_inactive' && ['reserve', 'dd', 'recharge', 'propose'].includes(req.kind) && this.mayBeInactive(req);
    // An update's { amount } that does not pay what a report over its grant left unpaid is
    // refused before anything is written (stop 25), as one that buys no block.
    const amountTooSmall = answer.status === 400 && code === 'validation_failed' && req.kind === 'update' && (req.body.requested as { amount?: number } | undefined)?.amount !== undefined;
    if (!inactive && !amountTooSmall && !allowed[req.kind].some(([s, c]) => s === answer.status && c === code)) {
      this.fail('unexpected answer', `${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
    }
    const charged = this.accounts.get(req.accountId)!;
    if (answer.status === 402 && (req.kind === 'reserve' || req.kind === 'dd')) {
      // A service account that cannot pay answers by its onEmpty (RFC 8506 Final-Unit-Action).
      const actions = charged.owner ? [...charged.onEmpty].map((e) => (e === 'deny' ? 'terminate' : e)) : ['terminate'];
      if (!actions.includes(answer.body?.finalUnitAction)) this.fail('unexpected answer', `${what}: 402 with finalUnitAction ${answer.body?.finalUnitAction}, expected one of ${actions.join(', ')}`);
    }
    // A reserve's, an event charge's or a manual recharge's refusal by an account that exists
    // is kept: repeats, even after a top-up, answer it (API.md: the original answer).
    if ((req.kind === 'reserve' || req.kind === 'dd' || req.kind === 'recharge') && (answer.status === 402 || answer.status === 403)) req.first = answer;
    // So is a manual recharge's refusal by its service account's settings (no rechargeAmount,
    // an amount that buys nothing): a PUT may change them (stop 27); not the balance cap's.
    if (req.kind === 'recharge' && answer.status === 400 && code === 'validation_failed' && answer.body?.maxBalance === undefined) req.first = answer;
    // So is a refund's (it may give back more, or anything at all, later).
    if (req.kind === 'refund' && answer.status === 409 && code === 'conflict') req.first = answer;
    // And any refusal because the session is closed (stop 27): a reuse of its id is a conflict.
    if (answer.status === 409 && code === 'session_closed') req.first = answer;
    if (req.kind === 'recharge' && answer.status === 400) {
      const sa = this.accounts.get(req.sa!)!;
      if (req.amount !== undefined && req.amount >= Math.ceil(sa.rate!.amount / sa.rate!.units)) this.fail('unexpected answer', `${what}: a recharge of ${req.amount} (buys ${unitsBought(req.amount, sa.rate!)} ${sa.unit}) refused: ${JSON.stringify(answer.body)}`);
    }
    if (req.sid && answer.status === 409 && code === 'session_closed') {
      const s = this.sessions.get(req.sid);
      if (s && (s.state === 'active' || s.state === 'abandoned' || s.state === 'unknown')) s.state = 'finished';
    }
    if (req.kind === 'refund' && req.sid) {
      const s = this.sessions.get(req.sid)!;
      // Judged on what the model knows now: only when this request was not sent before, since
      // its refusal may be kept from an earlier attempt, on the session as it was then.
      if (s.inDoubt.size === 0 && !req.wasInDoubt && req.amount !== undefined && req.amount <= s.charged - s.refunded) {
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
      case 'recharge': {
        const sa = this.accounts.get(req.sa!)!;
        const amount = body.recharged?.amount;
        const v = body.serviceAccount ?? {};
        if (answer.status !== 200 || body.accountId !== req.accountId || body.classification !== sa.classification
          || (req.amount !== undefined ? amount !== rechargeCost(req.amount, sa.rate!) : !paysARechargeAmount(sa, amount))
          || body.recharged?.units !== unitsBought(amount, sa.rate!)
          || v.unit !== sa.unit || v.available !== v.balance - v.reserved || v.available < 0 || v.reserved < 0) {
          this.fail('recharge', `${what}: answer ${answer.status} ${JSON.stringify(body)} (rate ${JSON.stringify(sa.rate)}, recharge amounts ${[...sa.rechargeAmounts].join('/')})`);
        }
        account.confirmedRecharges.push(req);
        return;
      }
      case 'dd': {
        if (answer.status !== 201 || body.charged?.amount !== req.amount || body.charged?.units !== req.units || body.chargedAccountId !== this.payerOf(req.accountId)
          || body.serviceAccount !== account.classification) {
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
        const routed = !!account.owner;
        // An amount buys whole blocks at the service's price, routed to a service account or not.
        const wanted = requested.units ?? Math.floor(requested.amount! / SERVICES[service].amount) * SERVICES[service].per;
        if (answer.status !== 201 || body.sessionId !== sid || body.state !== 'active' || body.chargedAccountId !== this.payerOf(req.accountId)
          || body.serviceAccount !== account.classification || (routed && body.unit !== SERVICES[service].unit)
          || !int(g.units) || g.units < 1 || g.units > wanted || g.amount !== costOf(service, g.units, routed)) {
          this.fail('rating', `${what}: reserve answer ${answer.status} ${JSON.stringify(body)} (wanted ${wanted} units)`);
        }
        if (body.interimIntervalSeconds !== intervalOf(service, false)) this.fail('interval', `${what}: interimIntervalSeconds ${body.interimIntervalSeconds}, the service dictates ${intervalOf(service, false)}`);
        const s = this.sessionFor(sid, req, service);
        s.state = 'active';
        s.grantedUnits = g.units;
        return;
      }
      case 'propose': {
        const sid = sessionIdFor(req.rid);
        const ids = (req.body.parties as Array<{ accountId: string }>).map((p) => p.accountId);
        if (answer.status !== 201 || body.sessionId !== sid || body.state !== 'pending_agreement' || !isDeepStrictEqual(body.principle, req.body.principle)
          || !isDeepStrictEqual(body.parties?.map((p: any) => p.accountId), ids) || body.parties.some((p: any) => p.agreed || p.reserved?.amount !== 0)) {
          this.fail('party', `${what}: proposal answered ${answer.status} ${JSON.stringify(body)}`);
        }
        const s = this.partySessionFor(sid, req);
        if (s.state === 'unknown') s.state = 'pending';
        return;
      }
      case 'agree': {
        this.applyAgreement(req, answer, what);
        return;
      }
      case 'update':
      case 'debit':
      case 'release':
      case 'refund': {
        const s = this.sessions.get(req.sid!)!;
        if (s.party && req.kind !== 'refund') {
          this.applyPartyStep(s, s.party, req, answer, what);
          return;
        }
        const service = s.serviceId;
        if (body.charged && (!int(body.charged.amount) || !int(body.charged.units) || body.charged.amount > costOf(service, body.charged.units, s.routed))) {
          this.fail('rating', `${what}: charged ${JSON.stringify(body.charged)} is more than ${body.charged.units} units cost`);
        }
        if (body.charged) s.charged = Math.max(s.charged, body.charged.amount);
        if (req.kind === 'update') {
          if (answer.status === 200) {
            // A grant costs what takes the session's charge so far to the price of its usage with
            // the grant used: the block the usage is in is paid, unless a report over its grant
            // left it unpaid, and then the grant pays it first.
            const usedSoFar = body.charged?.units;
            const addedCost = body.granted?.units === 0 ? 0
              : int(usedSoFar) && int(body.granted?.units) && int(body.charged?.amount) ? costOf(service, usedSoFar + body.granted.units, s.routed) - body.charged.amount : NaN;
            if (!int(body.granted?.units) || body.granted.amount !== addedCost) this.fail('rating', `${what}: granted ${JSON.stringify(body.granted)} after ${usedSoFar} units used`);
            // The server-dictated interval (seed 001): the longer one once the session reported.
            if (body.interimIntervalSeconds !== intervalOf(service, true)) this.fail('interval', `${what}: interimIntervalSeconds ${body.interimIntervalSeconds} after a report, the service dictates ${intervalOf(service, true)}`);
            s.grantedUnits = body.granted.units;
          } else {
            const inactive = answer.status === 403 && body.code === 'account_inactive' && this.mayBeInactive(req);
            if (body.code !== 'insufficient_credit' && !inactive) this.fail('unexpected answer', `${what}: ${JSON.stringify(body)}`);
            s.grantedUnits = 0;
          }
          return;
        }
        if (req.kind === 'debit') {
          if (body.state !== 'closed' || !int(body.returned?.amount)) this.fail('unexpected answer', `${what}: ${JSON.stringify(body)}`);
          s.state = 'closed';
          return;
        }
        // A release closes the session (API.md); `released` tells it from a final debit.
        if (body.state === 'closed' && body.released === true && body.refunded?.amount === 0) {
          if (!int(body.returned?.amount)) this.fail('unexpected answer', `${what}: ${JSON.stringify(body)}`);
          s.state = 'released';
          return;
        }
        // A refund. A release never becomes one: on a session closed meanwhile it is 409 session_closed.
        const amount = body.refunded?.amount;
        if (req.kind === 'release') this.fail('unexpected answer', `${what}: a release refunded what the session charged: ${JSON.stringify(body)}`);
        if (!int(amount) || amount < 1 || amount !== req.amount) this.fail('unexpected answer', `${what}: ${JSON.stringify(body)}`);
        s.refunded += amount;
        if (s.party) {
          // Back to the parties as they paid: the parts add up, and none passes what its party paid.
          const party = s.party;
          const parts = party.ids.map((id) => (body.parties ?? []).find((p: any) => p.accountId === id)?.refunded?.amount ?? 0);
          party.refunded ??= party.ids.map(() => 0);
          if (parts.reduce((a: number, b: number) => a + b, 0) !== amount || parts.some((part: number, i: number) => !int(part) || party.refunded![i]! + part > (party.charged?.[i] ?? 0))) {
            this.fail('party: refund', `${what}: parts ${JSON.stringify(body.parties)} of ${amount}, charged ${JSON.stringify(party.charged)}, refunded before ${JSON.stringify(party.refunded)}`);
          }
          parts.forEach((part: number, i: number) => { party.refunded![i]! += part; this.accounts.get(party.ids[i]!)!.refunds += part; });
          this.count('party: refunds');
        } else {
          account.refunds += amount;
        }
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

  /** The model of a multi-party session proposed by `req` (every party's account lists it). */
  private partySessionFor(sid: string, req: Req): SessionModel {
    const s = this.sessionFor(sid, req, req.body.serviceId as ServiceId);
    if (!s.party) {
      const ids = (req.body.parties as Array<{ accountId: string }>).map((p) => p.accountId);
      s.party = { ids, principle: req.body.principle as Principle, agreed: new Set(), usedUnits: 0, grantedUnits: 0, holds: ids.map(() => 0) };
      for (const id of ids) this.accounts.get(id)!.sessions.add(sid);
    }
    return s;
  }

  /**
   * An agreement's answer: the session as it is (still waiting), or, from the last party, the
   * session active with every party's most possible share reserved, or a 402 naming the party
   * that cannot pay (nothing reserved from anyone: the audit sees it in the ledgers).
   */
  private applyAgreement(req: Req, answer: Answer, what: string) {
    const s = this.sessions.get(req.sid!)!;
    const party = s.party!;
    const body = answer.body ?? {};
    const agreeing = req.body.accountId as string;
    if (answer.status === 402 || answer.status === 403) {
      const expected = answer.status === 402 ? 'insufficient_credit' : 'account_inactive';
      if (body.code !== expected || !party.ids.includes(body.accountId) || (answer.status === 403 && !this.mayBeInactive(req))) this.fail('party', `${what}: ${answer.status} that names no party: ${JSON.stringify(body)}`);
      party.agreed.add(agreeing);
      return;
    }
    const shown = body.parties?.map((p: any) => p.accountId);
    if (answer.status !== 200 || body.sessionId !== s.sid || !isDeepStrictEqual(shown, party.ids)
      || !['pending_agreement', 'active'].includes(body.state) || !body.parties[party.ids.indexOf(agreeing)]?.agreed) {
      this.fail('party', `${what}: agreement answered ${answer.status} ${JSON.stringify(body)}`);
    }
    party.agreed.add(agreeing);
    if (body.state !== 'active' || (s.state !== 'pending' && s.state !== 'unknown')) return;
    // Activation: each party holds the most its share can come to for the whole grant.
    const granted = body.granted?.units;
    const shares = mostPossibleShares(party.principle, party.ids, priceOf(s.serviceId, granted));
    const reserved = body.parties.map((p: any) => p.reserved?.amount);
    if (!Number.isSafeInteger(granted) || granted < 1 || !isDeepStrictEqual(reserved, shares) || body.granted.amount !== priceOf(s.serviceId, granted)) {
      this.fail('party', `${what}: activated with ${JSON.stringify(body.granted)}, parties reserving ${JSON.stringify(reserved)}; the principle reserves ${JSON.stringify(shares)}`);
    }
    party.grantedUnits = granted;
    party.holds = shares;
    s.grantedUnits = granted;
    s.state = 'active';
  }

  /**
   * A step of an active multi-party session. Money moves only at the end: an update grows
   * each party's hold to its most possible share of the new grant; the final debit charges
   * the session's total (usage, never beyond what was reserved) by the principle; a release
   * charges nothing. While the model is in step with the session (its client gave up
   * nothing) every number is checked exactly.
   */
  private applyPartyStep(s: SessionModel, party: PartyModel, req: Req, answer: Answer, what: string) {
    const body = answer.body ?? {};
    const inStep = s.state === 'active';
    const used = (req.body.used as { units: number } | undefined)?.units ?? 0;
    const price = (units: number) => priceOf(s.serviceId, units);
    const partsShown = (): number[] => body.parties?.map((p: any) => p.charged?.amount);
    if (req.kind === 'update') {
      if (answer.status === 402 || answer.status === 403) {
        // No hold grew (a party short, or suspended), but the reported usage is recorded.
        const expected = answer.status === 402 ? 'insufficient_credit' : 'account_inactive';
        if (body.code !== expected || !party.ids.includes(body.accountId) || (inStep && body.charged?.units !== party.usedUnits + used) || (answer.status === 403 && !this.mayBeInactive(req))) {
          this.fail('party', `${what}: ${answer.status} ${JSON.stringify(body)} (model used ${party.usedUnits} + ${used})`);
        }
        party.usedUnits += used;
        s.grantedUnits = 0;
        return;
      }
      const usedUnits = party.usedUnits + used;
      const wanted = (req.body.requested as { units?: number } | undefined)?.units ?? 0;
      const grantedUnits = Math.max(party.grantedUnits, usedUnits + wanted);
      const cost = Math.min(price(usedUnits), price(party.grantedUnits));
      const shares = mostPossibleShares(party.principle, party.ids, price(grantedUnits));
      const holds = party.holds.map((h, i) => Math.max(h, shares[i]!));
      const reserved = body.parties?.map((p: any) => p.reserved?.amount);
      if (!Number.isSafeInteger(body.granted?.units) || body.charged?.amount !== 0
        || (inStep && (body.granted.units !== grantedUnits - usedUnits || body.granted.amount !== price(grantedUnits) - cost
          || body.charged.units !== usedUnits || !isDeepStrictEqual(reserved, holds)))) {
        this.fail('party', `${what}: update answered ${JSON.stringify(body)}; the model expects ${grantedUnits - usedUnits} units granted (${price(grantedUnits) - cost}), ${usedUnits} used, holds ${JSON.stringify(holds)}`);
      }
      Object.assign(party, { usedUnits, grantedUnits, holds });
      s.grantedUnits = body.granted.units;
      return;
    }
    if (req.kind === 'release') {
      // The usage the updates recorded is charged, by the principle (loser-pays as split). A
      // proposal never agreed holds and charges nothing: its answer has no parts.
      const total = body.charged?.amount ?? 0;
      const expectedParts = Number.isSafeInteger(total) ? chargesWithoutOutcome(party.principle, party.ids, total) : [];
      if (answer.status !== 200 || body.state !== 'closed' || body.released !== true || body.refunded?.amount !== 0 || !Number.isSafeInteger(total)
        || (body.parties !== undefined && !isDeepStrictEqual(partsShown(), expectedParts))
        || (inStep && (total !== Math.min(price(party.usedUnits), price(party.grantedUnits)) || body.returned?.amount !== party.holds.reduce((a, b) => a + b, 0) - total))) {
        this.fail('party', `${what}: release answered ${answer.status} ${JSON.stringify(body)} (holds ${JSON.stringify(party.holds)}, ${party.usedUnits} units used of ${party.grantedUnits})`);
      }
      party.charged = expectedParts;
      party.holds = party.ids.map(() => 0);
      s.charged = total;
      s.state = 'released';
      return;
    }
    // The final debit: the total by the principle, the parts adding up to it exactly.
    const total = body.charged?.amount;
    const usedUnits = party.usedUnits + used;
    const expectedParts = Number.isSafeInteger(total) ? partyCharges(party.principle, party.ids, total, req.body.outcome as { loser?: string } | undefined) : [];
    const parts = partsShown();
    if (answer.status !== 200 || body.state !== 'closed' || !Number.isSafeInteger(total) || total > price(body.charged.units)
      || !isDeepStrictEqual(parts, expectedParts) || expectedParts.reduce((a, b) => a + b, 0) !== total) {
      this.fail('party', `${what}: debit answered ${answer.status} ${JSON.stringify(body)}; the principle splits ${total} as ${JSON.stringify(expectedParts)}`);
    }
    if (inStep && (body.charged.units !== usedUnits || total !== Math.min(price(usedUnits), price(party.grantedUnits))
      || body.returned?.amount !== party.holds.reduce((a, b) => a + b, 0) - total)) {
      this.fail('party', `${what}: debit answered ${JSON.stringify(body)}; the model has ${usedUnits} units used of ${party.grantedUnits} granted, holds ${JSON.stringify(party.holds)}`);
    }
    party.charged = expectedParts;
    party.holds = party.ids.map(() => 0);
    s.charged = total;
    s.state = 'closed';
  }

  private sessionFor(sid: string, req: Req, serviceId: ServiceId): SessionModel {
    let s = this.sessions.get(sid);
    if (!s) {
      s = { sid, accountId: req.accountId, routed: !!this.accounts.get(req.accountId)!.owner, serviceId, client: -1, state: 'unknown', grantedUnits: 0, charged: 0, refunded: 0, inDoubt: new Set(), updates: [], reserveRid: req.rid,
        ...(typeof req.body?.multiSessionId === 'string' ? { multiSessionId: req.body.multiSessionId } : {}) };
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
    if (req.kind === 'propose') this.partySessionFor(sessionIdFor(req.rid), req).inDoubt.add(req.rid);
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
        ledger.add({ sk: item.sk, entryId: item.entryId, type: item.type, amount: item.amount, reservedDelta: item.reservedDelta, sessionId: item.sessionId, requestId: item.requestId, units: item.units, counterparty: item.counterparty, ...(item.pairEntryId ? { pairEntryId: item.pairEntryId } : {}) });
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
    // Every account item and ledger first (all clients are stopped): transfers between
    // accounts are checked on both sides before their amounts count.
    const items = new Map<string, Record<string, any>>();
    await Promise.all([...this.accounts.keys()].map(async (id) => {
      items.set(id, await this.checkAccountItem(id, `${final ? 'final ' : ''}audit of ${id}`));
      await this.refreshLedger(id);
    }));
    this.checkTransfers(final);
    /** Per currency (money accounts) and per service account (units): balances against what the answers and verified transfers explain. */
    const totals = new Map<string, { balance: number; expected: number }>();
    /** Members without money of their own: what they spent of their main account's. */
    const spentByMembers = new Map<string, number>();
    for (const account of this.accounts.values()) {
      const what = `${final ? 'final ' : ''}audit of ${account.id}`;
      const item = items.get(account.id)!;
      const ledger = this.ledgers.get(account.id)!;
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
          // Recorded when the ledger holds this very charge (its entry is keyed by the op's
          // time): a later charge under a requestId already in the ledger is a lag too.
          if (ledger.rows.has(`${op.at}#${opId}`)) continue;
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
        const bySweep = String(op.rid).startsWith('~expire:');
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
        if (!req || req.kind !== 'dd' || req.accountId !== account.id || req.amount !== amount || (req.answered && !(req.first && req.first.status < 300))) {
          this.fail('a: unexplained charge', `${what}: ledger charge ${rid} of ${amount}; the model has ${req ? `${req.kind} of ${req.amount} on ${req.accountId}, ${req.first ? 'answered' : req.inDoubt ? 'in doubt' : 'refused'}` : 'no such request'}`);
        }
      }
      for (const [rid, r] of ledger.refunds) {
        const req = this.reqs.get(rid);
        // A multi-party session's refund is on each paying party's ledger: its part.
        const answeredAmount = (body: any) => body?.parties ? body.parties.find((p: any) => p.accountId === account.id)?.refunded?.amount : body?.refunded?.amount;
        if (!req || req.kind !== 'refund' || req.sid !== r.sid || (req.answered && !req.first) || (req.first && answeredAmount(req.first.body) !== r.amount)) {
          this.fail('a: unexplained refund', `${what}: ledger refund ${rid} of ${r.amount} on ${r.sid}; the model has ${req ? `${req.kind} ${JSON.stringify(req.first?.body)}` : 'no such request'}`);
        }
      }
      // Money conservation against the answers the system gave, and the recharges and sponsor
      // transfers the ledger shows (checkTransfers verified each against its other side).
      // Sponsor transfers only move money between accounts: the totals per currency leave them out.
      let expected = account.topups - account.dd + account.refunds + ledger.recharged;
      const sponsored = ledger.sponsorIn - ledger.sponsorOut;
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
      for (; account.verifiedRecharges < account.confirmedRecharges.length; account.verifiedRecharges++) {
        const req = account.confirmedRecharges[account.verifiedRecharges]!;
        if (!ledger.transfers.has(`recharge:req:${req.rid}`)) this.fail('a: missing recharge', `${what}: answered recharge ${req.rid} of ${JSON.stringify(req.first?.body?.recharged)} is not in the ledger`);
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
        const refunds = [...s!.inDoubt].filter((rid) => this.reqs.get(rid)?.kind === 'refund');
        // A party of a multi-party session pays its part of the total, by the principle.
        const answered = s!.party ? this.partyPart(s!, account.id, sl.expiredBy.size > 0) : s!.charged;
        if (s!.party && !s!.party.ids.includes(account.id)) this.fail('party', `${what}: session ${sid} has entries on ${account.id}, not one of its parties ${s!.party.ids.join(', ')}`);
        if (steps.length === 0 ? charged !== answered : charged < answered) {
          this.fail(s!.party ? 'party: part charged' : 'a: session charged', `${what}: session ${sid} charged ${charged} on the account/ledger, the answers say ${answered}${s!.party ? ` (its part of ${s!.charged} under ${JSON.stringify(s!.party.principle)})` : ''} (${steps.length} steps in doubt)`);
        }
        expected -= charged;
        for (const rid of refunds) expected += ledger.refunds.get(rid)?.amount ?? 0;
        const answeredRefunds = s!.party ? (s!.party.refunded?.[s!.party.ids.indexOf(account.id)] ?? 0) : s!.refunded;
        if (refunds.length === 0 && sl.refunded !== answeredRefunds) {
          this.fail('a: session refunded', `${what}: session ${sid} refunded ${sl.refunded} in the ledger, the answers say ${answeredRefunds}`);
        }
        if (sl.held < 0) this.fail('c: hold', `${what}: session ${sid} released more than it reserved (${JSON.stringify(sl)})`);
        if (sl.expiredBy.size > 1) this.fail('c: resolved once', `${what}: session ${sid} expired ${sl.expiredBy.size} times`);
      }
      if (account.owner) {
        // Units: what was bought = what was charged (net of refunds) + the balance (available + reserved).
        if (item.balance !== expected) {
          this.fail('a: units', `${what}: ${item.balance} ${account.unit} (available ${item.available} + reserved ${item.reserved}), but bought ${ledger.recharged} - direct debits ${account.dd} - session charges + refunds ${account.refunds} (with in-doubt requests resolved from the ledger) = ${expected}`);
        }
      } else if (item.balance !== expected + sponsored + ledger.allotted) {
        this.fail('a: conservation', `${what}: balance ${item.balance}, but top-ups ${account.topups} - direct debits ${account.dd} - session charges + refunds ${account.refunds} + recharges ${ledger.recharged} (with in-doubt requests resolved from the ledger) + sponsor transfers in ${ledger.sponsorIn} - out ${ledger.sponsorOut} + allotments ${ledger.allotted} = ${expected + sponsored + ledger.allotted}`);
      }
      this.checkAllotments(account, item, ledger, what);
      if (account.mainAccountId && account.topups === 0 && ledger.sponsorIn === 0) spentByMembers.set(account.id, -(expected + sponsored));
      // Each sponsor transfer to this account moved its sponsorSeq by one.
      if ((item.sponsorSeq ?? 0) !== ledger.sponsorsReceived) {
        this.fail('c: sponsor transfer once', `${what}: sponsorSeq ${item.sponsorSeq ?? 0} but ${ledger.sponsorsReceived} sponsor transfers in the ledger`);
      }
      const total = account.owner ? account.id : account.currency;
      const t = totals.get(total) ?? { balance: 0, expected: 0 };
      t.balance += item.balance;
      t.expected += expected;
      totals.set(total, t);
      if (final) await this.finalAccountChecks(account, item, ledger);
    }
    for (const [total, t] of totals) {
      if (t.balance !== t.expected) this.fail('a: conservation', `${total}: sum of balances ${t.balance} != top-ups - charges + refunds - recharges ${t.expected}`);
    }
    if (final) await this.checkFamilyViews(items, spentByMembers);
  }

  /**
   * Families as GET shows them (API.md: a member's charges are "debited from the main
   * account"): the views move what members hold of their allotments to the main account and
   * create or lose nothing (a family's view balances and reservations add up to its items'),
   * and a member with no money of its own (no top-up, no sponsor transfer) shows a balance of
   * 0 and a `consumed` of exactly what it spent (its charges and recharges, net of refunds).
   */
  private async checkFamilyViews(items: Map<string, Record<string, any>>, spentByMembers: Map<string, number>) {
    for (const main of this.accounts.values()) {
      if (!main.members.length) continue;
      const family = [main.id, ...main.members];
      const views = new Map<string, any>();
      for (const id of family) {
        const answer = await this.send(null, 'GET', `/accounts/${id}`, undefined, { faults: false, giveUp: false, label: 'final', trace: [] });
        if (answer?.status !== 200) this.fail('b: family view', `final GET /accounts/${id}: ${answer?.status} ${JSON.stringify(answer?.body)}`);
        views.set(id, answer!.body);
      }
      for (const figure of ['balance', 'reserved'] as const) {
        const shown = family.reduce((sum, id) => sum + views.get(id)[figure], 0);
        const stored = family.reduce((sum, id) => sum + items.get(id)![figure], 0);
        if (shown !== stored) this.fail('b: family view', `family of ${main.id}: GET shows ${figure} ${shown} in all, the items hold ${stored} (${family.map((id) => `${id} ${views.get(id)[figure]}`).join(', ')})`);
      }
      for (const id of main.members) {
        const spent = spentByMembers.get(id);
        if (spent === undefined) continue;
        const view = views.get(id);
        if (view.balance !== 0 || view.consumed !== spent) this.fail('b: family view', `final GET /accounts/${id}: balance ${view.balance}, consumed ${view.consumed}; it has no money of its own and spent ${spent} of ${main.id}'s`);
        this.count('end: member views checked');
      }
    }
  }

  /**
   * Whom a charge's answer names as charged: an attached account's main account (API.md: its
   * charges are "debited from the main account"), else the account the client named (the
   * owner of a service account the charge was routed to).
   */
  private payerOf(accountId: string): string {
    return this.accounts.get(accountId)?.mainAccountId ?? ownerOf(accountId);
  }

  /**
   * What a party of a multi-party session was charged, by the answers (nothing until its final
   * debit or release); once `expired`, what the expiry charged it: the usage the answers
   * recorded, by the principle (loser-pays as split).
   */
  private partyPart(s: SessionModel, accountId: string, expired = false): number {
    const party = s.party!;
    const i = party.ids.indexOf(accountId);
    if (party.charged) return party.charged[i] ?? 0;
    if (!expired) return 0;
    const price = (units: number) => priceOf(s.serviceId, units);
    return chargesWithoutOutcome(party.principle, party.ids, Math.min(price(party.usedUnits), price(party.grantedUnits)))[i] ?? 0;
  }

  /**
   * Attached accounts and their main accounts (seed 002). Allotments only move money inside
   * the family (checkTransfers matched both sides; the per-currency total checks they cancel
   * out). Here: each side's item agrees with its ledger (`takenMinor` on the member,
   * `allottedOut` on the main account), and no member ever held more than its consumption
   * limit allowed: replaying its allotments in order (`allotSeq` orders them), what it had
   * taken never passed the largest limit it was ever given (a lowered limit takes back only
   * what is not reserved, so the largest is the bound that always holds).
   */
  private checkAllotments(account: AccountModel, item: Record<string, any>, ledger: AccountLedger, what: string) {
    if (account.members.length) {
      if ((item.allottedOut ?? 0) !== -ledger.allotted) this.fail('a: allotments', `${what}: allottedOut ${item.allottedOut ?? 0} but its ledger gave ${-ledger.allotted} net to members`);
      return;
    }
    if (!account.mainAccountId) {
      if (ledger.allotments.size) this.fail('a: allotments', `${what}: allotment entries on an account that is neither main nor attached`);
      return;
    }
    if ((item.takenMinor ?? 0) !== ledger.allotted) this.fail('a: allotments', `${what}: takenMinor ${item.takenMinor ?? 0} but its ledger took ${ledger.allotted} net from ${account.mainAccountId}`);
    if (!account.limitsEver.length) return;
    const limit = Math.max(...account.limitsEver);
    const bySeq = [...ledger.allotments.values()].map((row) => ({ row, seq: Number(/:(\d+):member$/.exec(row.entryId)?.[1]) })).sort((a, b) => a.seq - b.seq);
    let taken = 0;
    for (const { row, seq } of bySeq) {
      taken += row.amount;
      if (row.amount > 0 && taken > limit) {
        this.fail('consumption limit', `${what}: allotment ${seq} (${row.amount}) took it to ${taken} from ${account.mainAccountId}, past its consumption limit (the largest it had: ${limit}; limits ${account.limitsEver.join(', ')})`);
      }
    }
    if (account.limitPatches.settled(account.limitPatches.mark()) && account.limit !== undefined && item.consumptionLimit !== account.limit) {
      this.fail('consumption limit', `${what}: consumptionLimit ${item.consumptionLimit}, last set ${account.limit}`);
    }
  }

  /**
   * Recharges and sponsor transfers: each written by one transaction with its other side, so
   * at an audit both sides exist, once, for matching amounts; a recharge buys the units its
   * amount buys at the service account's rate, for an amount a request asked (manual) or the
   * service account's rechargeAmount (threshold, schedule); a sponsor was named by the account.
   */
  private checkTransfers(final: boolean) {
    for (const [accountId, ledger] of this.ledgers) {
      if (ledger.twice.length) this.fail('c: exactly once', `${accountId}: ledger entries ${ledger.twice.map((r) => r.entryId).join(', ')} written twice`);
      for (const row of ledger.unpaired.splice(0)) {
        const what = `${final ? 'final ' : ''}audit of ${accountId}: ${row.type} ${row.entryId} of ${row.amount}`;
        const other = this.ledgers.get(row.counterparty ?? '');
        if (row.type === 'allotment' && row.pairEntryId) {
          // A lateral allotment: between two members of one main account, each side naming the other.
          const pairId = row.pairEntryId;
          const pair = other?.allotments.get(pairId);
          const mainOf = (id: string) => this.accounts.get(id)?.mainAccountId;
          if (!/^allot:(.+):(\d+):member$/.test(row.entryId) || !mainOf(accountId) || mainOf(accountId) !== mainOf(row.counterparty ?? '') || row.amount === 0
            || !pair || pair.amount !== -row.amount || pair.counterparty !== accountId || pair.pairEntryId !== row.entryId) {
            this.fail('a: allotment', `${what}: no matching lateral entry ${pairId} on ${row.counterparty} (${pair ? JSON.stringify(pair) : 'none'}), or not between two members of one main account`);
          }
          if (row.amount > 0) this.count('ledger: lateral allotments');
          continue;
        }
        if (row.type === 'allotment') {
          // allot:<member>:<seq>:main on the main account, :member on the member, opposite amounts.
          const m = /^allot:(.+):(\d+):(main|member)$/.exec(row.entryId);
          const onMember = m?.[3] === 'member';
          const memberId = onMember ? accountId : row.counterparty!;
          const mainId = onMember ? row.counterparty! : accountId;
          const pair = other?.allotments.get(`allot:${m?.[1]}:${m?.[2]}:${onMember ? 'main' : 'member'}`);
          if (!m || m[1] !== memberId || this.accounts.get(memberId)?.mainAccountId !== mainId || row.amount === 0
            || !pair || pair.amount !== -row.amount || pair.counterparty !== accountId) {
            this.fail('a: allotment', `${what}: no matching entry on ${row.counterparty} (${pair ? JSON.stringify(pair) : 'none'}), or not between an attached account and its main account`);
          }
          if (onMember) this.count(row.amount > 0 ? 'ledger: allotments taken' : 'ledger: allotments given back');
          continue;
        }
        if (row.type === 'recharge') {
          const moneySide = row.amount <= 0;
          const ownerId = moneySide ? accountId : row.counterparty!;
          const saId = moneySide ? row.counterparty! : accountId;
          const sa = this.accounts.get(saId);
          const pair = other?.transfers.get(row.entryId);
          if (!sa?.owner || sa.owner !== ownerId || !pair || pair.type !== 'recharge' || pair.counterparty !== accountId) {
            this.fail('a: recharge', `${what}: no matching entry on ${row.counterparty} (${pair ? JSON.stringify(pair) : 'none'})`);
          }
          if (!moneySide) continue;
          this.count(`ledger: recharges (${row.entryId.split(':')[1]})`);
          const amount = -row.amount;
          if (pair!.amount !== unitsBought(amount, sa!.rate!) || row.units !== pair!.amount) {
            this.fail('a: recharge', `${what}: ${amount} bought ${pair!.amount} ${sa!.unit} (entry says ${row.units}), the rate ${JSON.stringify(sa!.rate)} buys ${unitsBought(amount, sa!.rate!)}`);
          }
          const id = row.entryId.slice('recharge:'.length);
          if (id.startsWith('req:')) {
            const req = this.reqs.get(id.slice(4));
            if (!req || req.kind !== 'recharge' || req.sa !== saId || req.accountId !== ownerId || row.requestId !== req.rid
              || (req.first ? req.first.body?.recharged?.amount !== amount : !req.inDoubt)) {
              this.fail('a: unexplained recharge', `${what}: the model has ${req ? `${req.kind} ${req.text} on ${req.sa}, ${req.first ? `answered ${JSON.stringify(req.first.body?.recharged)}` : req.inDoubt ? 'in doubt' : 'refused'}` : 'no such request'}`);
            }
            if (!req!.first && req!.amount !== undefined && rechargeCost(req!.amount, sa!.rate!) !== amount) this.fail('a: unexplained recharge', `${what}: request ${req!.rid} asked ${req!.amount} (costs ${rechargeCost(req!.amount, sa!.rate!)})`);
          } else if (id.startsWith('thr:') || id.startsWith(`sch:${saId}:`)) {
            if (!paysARechargeAmount(sa!, amount)) this.fail('a: unexplained recharge', `${what}: ${saId} recharges ${[...sa!.rechargeAmounts].join(' or ')}`);
          } else {
            this.fail('a: unexplained recharge', `${what}: unknown recharge`);
          }
        } else {
          // `sponsor:<sponsored account>:<cover key>:from|to`; ids and keys may hold colons, so
          // the sponsored account is read from the entry's side, not parsed out of the id.
          const side = /:(from|to)$/.exec(row.entryId)?.[1];
          const to = side === 'to';
          const sponsoredId = (to ? accountId : row.counterparty) ?? '';
          const transferId = side && row.entryId.startsWith(`sponsor:${sponsoredId}:`) ? row.entryId.slice(0, -(side.length + 1)) : undefined;
          const pair = transferId ? other?.transfers.get(`${transferId}:${to ? 'from' : 'to'}`) : undefined;
          const sponsored = this.accounts.get(sponsoredId);
          const sponsorId = to ? row.counterparty! : accountId;
          if (!transferId || !sponsored || (to ? row.amount <= 0 : row.amount >= 0)
            || !pair || pair.amount !== -row.amount || pair.counterparty !== accountId) {
            this.fail('a: sponsor transfer', `${what}: no matching entry on ${row.counterparty} (${pair ? JSON.stringify(pair) : 'none'})`);
          }
          if (to) this.count('ledger: sponsor transfers');
          if (!sponsored!.sponsorsEver.has(sponsorId) || this.accounts.get(sponsorId)?.currency !== sponsored!.currency) {
            this.fail('a: sponsor transfer', `${what}: ${sponsorId} was never a sponsor of ${sponsoredId} (sponsors named: ${[...sponsored!.sponsorsEver].join(', ') || 'none'})`);
          }
          if (to && row.amount > (sponsored!.sponsorCapEver.get(sponsorId) ?? Infinity)) {
            this.fail('a: sponsor transfer', `${what}: ${row.amount} from ${sponsorId}, whose maxTransfer was never above ${sponsored!.sponsorCapEver.get(sponsorId)}`);
          }
        }
      }
    }
  }

  private async finalAccountChecks(account: AccountModel, item: Record<string, any>, ledger: AccountLedger) {
    const what = `final audit of ${account.id}`;
    if (item.reserved !== 0) this.fail('c: reserved', `${what}: reserved ${item.reserved} after every session expired`);
    for (const [opId, op] of Object.entries(item.ops ?? {}) as Array<[string, any]>) {
      if (!op.done) this.fail('c: live hold', `${what}: ops entry ${opId} is still a live hold ${JSON.stringify(op)}`);
    }
    // Every reservation resolved exactly once: what the steps' entries put into holds, they
    // took out again (by debit, release or expiry).
    const holdsLeft = ['reserve', 'debit', 'release', 'expire'].reduce((sum, type) => sum + (ledger.byType.get(type) ?? 0), 0);
    if (holdsLeft !== 0) this.fail('c: resolved once', `${what}: the session steps' entries leave ${holdsLeft} reserved`);
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
        // A reserve the client gave up on may have been refused (and the refusal kept): final, holding nothing.
        const refusedInDoubt = item.state === 'refused' && s.state === 'unknown' && s.charged === 0;
        if (!['closed', 'expired', 'released'].includes(item.state) && !refusedInDoubt) this.fail('c: session state', `${what}: still ${item.state} after the clock passed every validity and the sweep ran (the model has ${s.state})`);
        if (item.state === 'expired') {
          // A game's expiry is told to every party; any other session's to its account.
          const told = s.party ? s.party.ids : [String(item.chargedAccountId).split('~')[0]!];
          for (const owner of told) {
            if (!this.expiredSessions.has(owner)) this.expiredSessions.set(owner, new Map());
            this.expiredSessions.get(owner)!.set(sid, String(item.lastUpdateAt));
          }
        }
        // A party session's expiry charged the usage its answers recorded (partyPart).
        if (s.party && !s.party.charged && item.state === 'expired') s.charged = s.party.ids.reduce((sum, id) => sum + this.partyPart(s, id, true), 0);
        if (item.hold?.chargedMinor !== s.charged) this.fail('c: session charged', `${what}: item charged ${item.hold?.chargedMinor}, answers ${s.charged}`);
        if (item.refundedMinor !== s.refunded) this.fail('c: session refunded', `${what}: item refunded ${item.refundedMinor}, answers ${s.refunded}`);
        if (item.hold?.holdMinor !== 0) this.fail('c: session hold', `${what}: item still holds ${item.hold?.holdMinor}`);
        if (s.party) {
          this.finalPartyChecks(s, s.party, item, what);
          continue;
        }
        const ledger = this.ledgers.get(s.accountId)!.session(sid);
        if (ledger.charged !== s.charged || ledger.refunded !== s.refunded || ledger.held !== 0) {
          this.fail('c: session ledger', `${what}: ledger ${JSON.stringify(ledger)}, answers charged ${s.charged} refunded ${s.refunded}`);
        }
        if (item.state !== 'expired' && ledger.expiredBy.size > 0) {
          this.fail('c: session ledger', `${what}: state ${item.state} but ${ledger.expiredBy.size} expire entries`);
        }
        if (s.state === 'closed' && item.state !== 'closed') this.fail('c: session state', `${what}: answered closed, item says ${item.state}`);
        if (s.state === 'released' && item.state !== 'released') this.fail('c: session state', `${what}: answered released, item says ${item.state}`);
      }
    }
  }

  /**
   * A finished multi-party session: each party's reservation resolved exactly once (its hold
   * back to zero in its ledger, at most one expiry), each party charged its part by the
   * principle, in the item, the ledger and the answers alike, the parts adding up to the total;
   * what refunds gave back, each party's as its answers said (the item keeps it too).
   */
  private finalPartyChecks(s: SessionModel, party: PartyModel, item: Record<string, any>, what: string) {
    const parts = party.ids.map((id) => this.partyPart(s, id, item.state === 'expired'));
    const inItem = (item.parties ?? []).map((p: any) => p.chargedMinor);
    if (!isDeepStrictEqual(inItem, parts) || parts.reduce((a, b) => a + b, 0) !== s.charged || (item.parties ?? []).some((p: any) => p.holdMinor !== 0)) {
      this.fail('party', `${what}: item parts ${JSON.stringify(item.parties)}, the answers' parts ${JSON.stringify(parts)} of ${s.charged}`);
    }
    const refundsInDoubt = [...s.inDoubt].some((rid) => this.reqs.get(rid)?.kind === 'refund');
    party.ids.forEach((id, i) => {
      const sl = this.ledgers.get(id)!.session(s.sid);
      const refunded = party.refunded?.[i] ?? 0;
      const inItem = (item.parties ?? [])[i]?.refundedMinor ?? 0;
      if (sl.charged !== parts[i] || sl.held !== 0 || sl.expiredBy.size > 1 || sl.refunded !== inItem || (!refundsInDoubt && sl.refunded !== refunded)) {
        this.fail('party', `${what}: party ${id}'s ledger ${JSON.stringify(sl)}, its part ${parts[i]}, refunded ${refunded} by the answers, ${inItem} by the item`);
      }
      if (item.state !== 'expired' && sl.expiredBy.size > 0) this.fail('c: session ledger', `${what}: state ${item.state} but ${id} has ${sl.expiredBy.size} expire entries`);
    });
    if (s.state === 'closed' && item.state !== 'closed') this.fail('c: session state', `${what}: answered closed, item says ${item.state}`);
    if (s.state === 'released' && item.state !== 'released') this.fail('c: session state', `${what}: answered released, item says ${item.state}`);
  }

  // --------------------------------------------------------------------------- setup

  private async setup() {
    const rng = new Rng(this.seed ^ 0x5eed);
    await ensureTable(createStore({ tableName: this.tableName, endpoint: this.endpoint }));
    process.env.TABLE_NAME = this.tableName;
    const runtimeOptions = { endpoint: this.endpoint, tableName: this.tableName, clock: this.clockBuffer, realisticClock: this.realisticClock, serviceCacheMs: 60_000, client: this.client };
    this.runtime = this.runtimeKind === 'lambda' ? new LambdaRuntime({ ...runtimeOptions, maxContainers: this.maxContainers }) : new ProcessRuntime(runtimeOptions);
    const trace: string[] = [];
    const must = async (method: 'PUT' | 'POST' | 'PATCH', path: string, body: unknown, status: number[]) => {
      const answer = await this.send(null, method, path, JSON.stringify(body), { faults: false, giveUp: false, label: 'setup', trace });
      if (!answer || !status.includes(answer.status)) this.fail('setup', `${method} ${path} answered ${answer?.status} ${JSON.stringify(answer?.body)}`);
      return answer!;
    };
    for (const [id, s] of Object.entries(SERVICES)) await must('PUT', `/services/${id}`, s.body, [200]);
    const prepaid = Math.max(4, Math.ceil(this.clientCount * 0.6));
    const postpaid = Math.max(2, Math.ceil(this.clientCount * 0.25));
    const money: AccountModel[] = [];
    for (let i = 0; i < prepaid + postpaid; i++) {
      const kind = i < prepaid ? 'prepaid' : 'postpaid';
      const id = kind === 'prepaid' ? `pre-${i}` : `post-${i - prepaid}`;
      const creditLimit = kind === 'postpaid' ? rng.range(200, 3000) : 0;
      // Two currencies: conservation holds per currency, and a sponsor must hold the account's.
      const currency: Currency = i % 4 === 3 ? 'USD' : 'EUR';
      // One account (an owner of a service account) is valid for a while only, and passes its
      // validUntil in a short run: from then on everything new it is asked is 403 (API.md).
      // Not drawn from `rng`, so the rest of the setup is the same for a seed as before.
      const validUntilMs = i === 1 ? START + (900 + (this.seed % 1800)) * 1000 : undefined;
      await must('POST', '/accounts', { accountId: id, currency, kind, ...(kind === 'postpaid' ? { creditLimit } : {}), ...(i % 5 === 0 ? { lowBalanceThreshold: 300 } : {}), ...(validUntilMs ? { validUntil: this.iso(validUntilMs) } : {}) }, [201]);
      const account = this.newAccount({ id, kind, creditLimit, poor: i % 3 === 2, currency, unit: 'money', validUntilMs });
      money.push(account);
      if (kind === 'prepaid' && i % 3 !== 2) {
        const req = this.newReq('topup', id, `setup-topup-${id}`, `/accounts/${id}/topup`, { requestId: `setup-topup-${id}`, amount: rng.range(500, 3000) });
        req.amount = req.body.amount as number;
        const answer = await must('POST', req.path, req.body, [200]);
        this.onAnswer(req, answer);
      }
    }
    // Service accounts (data in kilobytes, sms in events, voice in seconds): an owner's
    // sessions and events of that service draw units from it from now on. Some owners have two.
    for (const [i, owner] of money.entries()) {
      const classifications = (['data', 'sms', 'voice'] as const).filter((c) => (c === 'data' ? i % 3 === 0 : c === 'sms' ? i % 4 === 1 : i % 7 === 6));
      for (const classification of classifications) await this.setupServiceAccount(owner, classification, must);
    }
    // Sponsors for the poor accounts: rich accounts of their currency.
    for (const account of money) {
      if (!account.poor) continue;
      const candidates = money.filter((m) => !m.poor && m.currency === account.currency && m !== account);
      if (candidates.length === 0) continue;
      const sponsors = [...new Set([rng.pick(candidates), rng.pick(candidates)])].map((m) => ({ accountId: m.id, priority: rng.int(5) }));
      const answer = await must('PATCH', `/accounts/${account.id}`, { sponsors }, [200]);
      this.noteSponsors(account, sponsors);
      if (!isDeepStrictEqual(answer.body?.sponsors, sponsors)) this.fail('setup', `PATCH sponsors of ${account.id}: ${JSON.stringify(answer.body)}`);
    }
    await this.setupFamilies(rng, must);
  }

  /** A service account of `owner` (recharged once unless the owner is poor): its sessions and events of that service draw units from it from now on. */
  private async setupServiceAccount(owner: AccountModel, classification: ServiceId, must: (method: 'PUT' | 'POST' | 'PATCH', path: string, body: unknown, status: number[]) => Promise<Answer>) {
    const spec = SERVICE_ACCOUNTS[classification]!;
    const body = { unit: spec.unit, rate: spec.rate, ...spec.settings };
    const answer = await must('PUT', `/accounts/${owner.id}/service-accounts/${classification}`, body, [201]);
    const sa = this.newAccount({ id: `${owner.id}~${classification}`, kind: 'prepaid', creditLimit: 0, poor: false, currency: owner.currency, unit: spec.unit, owner: owner.id, classification, rate: spec.rate });
    this.noteSettings(sa, body);
    if (answer.body?.balance !== 0 || answer.body?.unit !== spec.unit) this.fail('setup', `PUT service account ${sa.id}: ${JSON.stringify(answer.body)}`);
    owner.routes.set(classification, sa.id);
    if (!owner.poor) {
      const rid = `setup-recharge-${sa.id.replace('~', '-')}`;
      const req = this.newReq('recharge', owner.id, rid, `/accounts/${owner.id}/service-accounts/${classification}/recharge`, { requestId: rid, amount: spec.settings.rechargeAmount as number });
      req.amount = req.body.amount as number;
      req.sa = sa.id;
      this.onAnswer(req, await must('POST', req.path, req.body, [200, 402]));
    }
  }

  /**
   * Families (seed 002): two main accounts (one prepaid, one postpaid in the other currency),
   * each paying for attached accounts, some of which have a consumption limit. Members are
   * charged like any account (sessions, events, multi-party sessions) and take allotments
   * from their main account; top-ups and sponsors are for the main accounts. The prepaid
   * main account keeps a data account, which its members' data sessions and events draw on
   * (API.md: the paying account's classification).
   */
  private async setupFamilies(rng: Rng, must: (method: 'PUT' | 'POST' | 'PATCH', path: string, body: unknown, status: number[]) => Promise<Answer>) {
    const families = [
      { id: 'home-0', kind: 'prepaid' as const, currency: 'EUR' as const, creditLimit: 0, topup: rng.range(3000, 8000), limits: [undefined, rng.range(2, 8) * 100, undefined] },
      { id: 'home-1', kind: 'postpaid' as const, currency: 'USD' as const, creditLimit: rng.range(1000, 3000), topup: 0, limits: [rng.range(3, 10) * 100, undefined] },
      // Valid for a while only (its validUntil passes in a run of a few thousand operations):
      // then neither it nor its members may charge, whatever allotments they hold.
      { id: 'home-2', kind: 'prepaid' as const, currency: 'EUR' as const, creditLimit: 0, topup: rng.range(2000, 5000), limits: [undefined, rng.range(2, 6) * 100], validUntilMs: START + (2400 + (this.seed % 3600)) * 1000 },
    ];
    for (const f of families) {
      const validUntilMs = 'validUntilMs' in f ? f.validUntilMs : undefined;
      await must('POST', '/accounts', { accountId: f.id, currency: f.currency, kind: f.kind, ...(f.creditLimit ? { creditLimit: f.creditLimit } : {}), ...(validUntilMs ? { validUntil: this.iso(validUntilMs) } : {}) }, [201]);
      const main = this.newAccount({ id: f.id, kind: f.kind, creditLimit: f.creditLimit, poor: false, currency: f.currency, unit: 'money', validUntilMs });
      if (f.topup) {
        const req = this.newReq('topup', f.id, `setup-topup-${f.id}`, `/accounts/${f.id}/topup`, { requestId: `setup-topup-${f.id}`, amount: f.topup });
        req.amount = f.topup;
        this.onAnswer(req, await must('POST', req.path, req.body, [200]));
        await this.setupServiceAccount(main, 'data', must);
      }
      for (const [i, limit] of f.limits.entries()) {
        const id = `m-${f.id.slice(5)}-${i}`;
        const answer = await must('POST', '/accounts', { accountId: id, currency: f.currency, kind: 'prepaid', mainAccountId: f.id, ...(limit !== undefined ? { consumptionLimit: limit } : {}) }, [201]);
        if (answer.body?.mainAccountId !== f.id || answer.body?.consumed !== 0 || answer.body?.consumptionLimit !== limit) this.fail('setup', `POST /accounts ${id}: ${JSON.stringify(answer.body)}`);
        const member = this.newAccount({ id, kind: 'prepaid', creditLimit: 0, poor: false, currency: f.currency, unit: 'money', mainAccountId: f.id });
        if (limit !== undefined) { member.limitsEver.push(limit); member.limit = limit; }
        main.members.push(id);
      }
    }
  }

  private newAccount(a: Pick<AccountModel, 'id' | 'kind' | 'creditLimit' | 'poor' | 'currency' | 'unit' | 'owner' | 'classification' | 'rate' | 'mainAccountId' | 'validUntilMs'>): AccountModel {
    const account: AccountModel = {
      ...a, topups: 0, dd: 0, refunds: 0, inDoubt: new Set(), sessions: new Set(),
      confirmedTopups: [], confirmedDd: [], verifiedTopups: 0, verifiedDd: 0, confirmedRecharges: [], verifiedRecharges: 0,
      rechargeAmounts: new Set(), onEmpty: new Set(), puts: new OverlappingWrites(), routes: new Map(), sponsorsEver: new Set(), sponsorCapEver: new Map(), sponsors: [], sponsorPatches: new OverlappingWrites(),
      limitsEver: [], limitPatches: new OverlappingWrites(), members: [],
    };
    this.accounts.set(a.id, account);
    return account;
  }

  /** A service account's settings as sent (before the answer: a concurrent charge may already use them). */
  private noteSettings(sa: AccountModel, body: Record<string, unknown>) {
    sa.settings = body;
    if (typeof body.rechargeAmount === 'number') sa.rechargeAmounts.add(body.rechargeAmount);
    sa.onEmpty.add(String(body.onEmpty));
  }

  private noteSponsors(account: AccountModel, sponsors: Array<{ accountId: string; priority: number; maxTransfer?: number }>) {
    account.sponsors = sponsors;
    for (const s of sponsors) {
      account.sponsorsEver.add(s.accountId);
      account.sponsorCapEver.set(s.accountId, Math.max(account.sponsorCapEver.get(s.accountId) ?? 0, s.maxTransfer ?? Infinity));
    }
  }

  private newReq(kind: Kind, accountId: string, rid: string, path: string, body: Record<string, unknown>, sid?: string): Req {
    const req: Req = { rid, kind, accountId, sid, method: 'POST', path, body, text: JSON.stringify(body), answered: false, inDoubt: false };
    const involved = this.involvedIn(req);
    req.suspensionsAtSend = this.suspensionsOver(involved);
    req.suspendedAtSend = involved.some((a) => a.suspended);
    req.sentAtMs = this.nowMs;
    this.reqs.set(rid, req);
    return req;
  }

  /**
   * The accounts whose suspension may refuse `req`: the one it names and the one its session
   * charges, a game's parties, and the owners and main accounts behind them (a member's
   * charges are authorized against its main account).
   */
  private involvedIn(req: { accountId: string; sid?: string }): AccountModel[] {
    const ids = new Set<string>([req.accountId]);
    const s = req.sid ? this.sessions.get(req.sid) : undefined;
    if (s) {
      ids.add(s.accountId);
      s.party?.ids.forEach((id) => ids.add(id));
    }
    for (const id of [...ids]) {
      const owner = this.accounts.get(id)?.owner;
      if (owner) ids.add(owner);
    }
    for (const id of [...ids]) {
      const main = this.accounts.get(id)?.mainAccountId;
      if (main) ids.add(main);
    }
    return [...ids].map((id) => this.accounts.get(id)).filter((a): a is AccountModel => a !== undefined);
  }

  private suspensionsOver(accounts: AccountModel[]): number {
    return accounts.reduce((n, a) => n + (a.suspensions ?? 0), 0);
  }

  /**
   * Whether a suspension may have refused `req` (403 account_inactive): one held when it was
   * first sent, or holds now, or was sent since (fails before: a request sent during a
   * suspension and answered after its resumption was not allowed its 403; seed 2528).
   */
  private mayBeInactive(req: Req): boolean {
    const involved = this.involvedIn(req);
    return !!req.suspendedAtSend || involved.some((a) => a.suspended) || this.suspensionsOver(involved) !== req.suspensionsAtSend || involved.some((a) => this.isExpired(a));
  }

  private isExpired(account: AccountModel, atMs = this.nowMs): boolean {
    return account.validUntilMs !== undefined && account.validUntilMs <= atMs;
  }

  /**
   * Nothing new is authorized for an account past its validUntil, nor for its attached and
   * service accounts (API.md: 403 account_inactive): a first success that granted or charged
   * something, of a request first sent after that moment, fails the run. The shared clock only
   * moves forward, so every attempt's handler saw the account expired too.
   */
  private checkNotExpired(req: Req, answer: Answer, what: string) {
    // A proposal holds nothing: each party's agreement is what authorizes (403 there).
    const authorizes = ['reserve', 'dd', 'recharge'].includes(req.kind) || (req.kind === 'update' && req.body.requested !== undefined && answer.status === 200 && (answer.body?.granted?.units ?? 0) > 0);
    if (!authorizes || req.sentAtMs === undefined) return;
    const expired = this.involvedIn(req).filter((a) => this.isExpired(a, req.sentAtMs));
    if (expired.length) this.fail('b: expired account authorized', `${what}: ${answer.status} ${JSON.stringify(answer.body)}, though ${expired.map((a) => `${a.id} (validUntil ${this.iso(a.validUntilMs)})`).join(', ')} had expired when it was sent at ${this.iso(req.sentAtMs)}`);
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
        charged: [...this.accounts.values()].reduce((s, a) => s + (a.owner ? 0 : a.dd), 0) + [...this.sessions.values()].reduce((s, x) => s + (x.routed ? 0 : x.charged), 0),
        refunded: [...this.accounts.values()].reduce((s, a) => s + (a.owner ? 0 : a.refunds), 0),
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
    for (const m of message.matchAll(/\b(ses_[A-Za-z0-9_-]{24}|(?:pre|post|home)-\d+|m-\d+-\d+|[trudlfegpa]-c\d+-\d+)\b/g)) tokens.add(m[1]!);
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
      if (a.owner) continue; // units, not money
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
    for (const req of [...this.reqs.values()]) if (req.inDoubt && (req.kind === 'topup' || req.kind === 'refund' || req.kind === 'recharge')) { this.count('end: retried in doubt'); await retry(req); }
    // Past every validity, then sweep until nothing more expires.
    this.advanceMs((VALIDITY_SECONDS + 60) * 1000);
    await this.sweepUntilQuiet();
    await this.runtime.idle();
    // Session steps given up: the sweep rolled them forward; retrying them now must answer
    // what was recorded (or that the session is finished).
    for (const req of [...this.reqs.values()]) {
      if (req.inDoubt && req.sid) { this.count('end: retried in doubt'); await retry(req); }
    }
    // The recharge trigger until it finds nothing due: every threshold marker consumed (or
    // dropped), every due schedule run, every notification relayed.
    for (let runs = 0; ; runs++) {
      const reply = await this.runtime.trigger(null);
      if (!reply.summary) this.fail('e: trigger failed', `the end-phase recharge trigger failed with no fault injected: ${reply.error}`);
      const summary = reply.summary!;
      this.record(-1, `end: recharge trigger ${JSON.stringify(summary)}`);
      this.count('end: trigger runs');
      this.count('trigger: recharged', summary.recharged ?? 0);
      if (summary.examined === 0 && summary.notificationsRelayed === 0) break;
      if (runs > 40) this.fail('c: recharge trigger', `the recharge trigger kept finding work after 40 runs: ${JSON.stringify(summary)}`);
    }
    await this.runtime.idle();
    void clients;
    await this.fullAudit(true);
    await this.finalSessionChecks();
    await this.finalRechargeChecks();
    await this.finalStatusChecks();
    await this.finalLedgerPages();
  }

  /**
   * Every ledger read through the API as a client pages it (following `next`): the entries
   * the table holds, each once, newest first, so they reconcile with the balance as the
   * auditor's own read does (API.md). The page size varies by account; at most ~40 pages each.
   */
  private async finalLedgerPages() {
    let index = 0;
    for (const account of this.accounts.values()) {
      const ledger = this.ledgers.get(account.id);
      if (!ledger) continue;
      const path = account.owner ? `/accounts/${account.owner}/service-accounts/${account.classification}/ledger` : `/accounts/${account.id}/ledger`;
      const limit = Math.min(100, Math.max(Math.ceil(ledger.rows.size / 40), 1 + ((this.seed + 7 * index++) % 50)));
      const keys: string[] = [];
      let sum = 0;
      let next: string | undefined;
      do {
        const page = `${path}?limit=${limit}${next ? `&next=${encodeURIComponent(next)}` : ''}`;
        const answer = await this.send(null, 'GET', page, undefined, { faults: false, giveUp: false, label: 'end: ledger page', trace: [] });
        if (answer?.status !== 200 || !Array.isArray(answer.body?.entries) || answer.body.entries.length > limit) this.fail('a: ledger pages', `GET ${page}: ${answer?.status} ${JSON.stringify(answer?.body).slice(0, 300)}`);
        for (const entry of answer!.body.entries) { keys.push(`${entry.at}#${entry.entryId}`); sum += entry.amount; }
        next = answer!.body.next;
        if (keys.length > ledger.rows.size) break;
      } while (next);
      const newestFirst = keys.every((key, i) => i === 0 || keys[i - 1]! > key);
      if (!newestFirst || keys.length !== ledger.rows.size || keys.some((key) => !ledger.rows.has(key)) || sum !== ledger.sumAmount) {
        this.fail('a: ledger pages', `${path} paged by ${limit}: ${keys.length} entries summing to ${sum}${newestFirst ? '' : ', not newest first'}; the table holds ${ledger.rows.size} summing to ${ledger.sumAmount}`);
      }
    }
  }

  /**
   * Every suspension was followed by a resumption: no member still carries its main account's
   * suspension, and no main account a status on its way to its members (a PATCH whose handler
   * died midway is finished by its retry, or by the sweep's visit).
   */
  private async finalStatusChecks() {
    for (const account of this.accounts.values()) {
      if (account.owner) continue;
      const { Item } = await this.audit.send(new GetCommand({ TableName: this.tableName, Key: { pk: `ACC#${account.id}`, sk: 'ACCOUNT' }, ConsistentRead: true }));
      if (!Item) continue;
      if (Item.status !== 'active' || Item.mainStatus !== undefined || Item.statusPendingSince !== undefined) {
        this.fail('c: status', `final audit of ${account.id}: status ${Item.status}, mainStatus ${Item.mainStatus}, statusPendingSince ${Item.statusPendingSince} after every suspension was lifted`);
      }
    }
  }

  /** Runs the interim sweep (no faults) until a run expires nothing more. */
  private async sweepUntilQuiet() {
    for (let runs = 0; ; runs++) {
      const reply = await this.runtime.sweep(null);
      if (!reply.summary) this.fail('e: sweep failed', `the end-phase sweep failed with no fault injected: ${reply.error}`);
      const summary = reply.summary!;
      this.record(-1, `end: sweep ${JSON.stringify(summary)}`);
      this.count('end: sweep runs');
      if (summary.expired === 0) return;
      if (runs >= 40) this.fail('c: sweep', 'the sweep kept expiring sessions after 40 runs');
    }
  }

  /**
   * After the last trigger run: no threshold or scheduled recharge left due, the outbox
   * empty (every notification relayed), each recharge and sponsor transfer notified by the
   * transaction that made it (notification ids derive from the ledger entries), and each
   * expired session by exactly one session_expired (written with its expiry).
   */
  private async finalRechargeChecks() {
    const now = this.iso();
    for (const sa of this.accounts.values()) {
      if (!sa.owner) continue;
      for (const kind of ['THRESHOLD', 'SCHEDULE']) {
        const { Item } = await this.audit.send(new GetCommand({ TableName: this.tableName, Key: { pk: `RCH#${sa.id}`, sk: kind }, ConsistentRead: true }));
        if (Item?.dueAt && Item.dueAt <= now) this.fail('c: recharge due', `final audit of ${sa.id}: ${kind.toLowerCase()} recharge due at ${Item.dueAt} left after the last trigger run (now ${now}): ${JSON.stringify(Item)}`);
      }
    }
    for (let shard = 0; shard < DUE_SHARDS; shard++) {
      const page = await this.audit.send(new QueryCommand({
        TableName: this.tableName, IndexName: DUE_INDEX, KeyConditionExpression: 'dueShard = :s AND dueAt <= :now',
        ExpressionAttributeValues: { ':s': `out#${shard}`, ':now': now }, Limit: 5,
      }));
      if (page.Items?.length) this.fail('c: notifications relayed', `final audit: notifications still in the outbox after the last trigger run: ${JSON.stringify(page.Items)}`);
    }
    for (const account of this.accounts.values()) {
      if (account.owner) continue;
      const ledger = this.ledgers.get(account.id)!;
      // (A notification past its TTL in real time may be gone: not expected.)
      // The payer of every transfer is notified; so is the receiver of a sponsor's.
      const expected = new Set([...ledger.transfers.values()].filter((r) => (r.amount < 0 || r.type === 'sponsor_transfer') && Date.parse(r.sk.split('#')[0]!) + NOTIFICATION_TTL_MS > Date.now()).map((r) => r.entryId));
      const notified = new Set<string>();
      const expiryNotes = new Map<string, number>();
      let start: Record<string, any> | undefined;
      do {
        const page = await this.audit.send(new QueryCommand({
          TableName: this.tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': `NOTE#${account.id}` }, ConsistentRead: true, ExclusiveStartKey: start,
        }));
        for (const note of page.Items ?? []) {
          if (note.type === 'recharge_done' || note.type === 'sponsor_transfer') notified.add(String(note.notificationId));
          if (note.type === 'session_expired') expiryNotes.set(String(note.sessionId), (expiryNotes.get(String(note.sessionId)) ?? 0) + 1);
        }
        start = page.LastEvaluatedKey;
      } while (start);
      const expired = [...(this.expiredSessions.get(account.id) ?? new Map<string, string>())].filter(([, at]) => Date.parse(at) + NOTIFICATION_TTL_MS > Date.now());
      const unnoticed = expired.filter(([sid]) => expiryNotes.get(sid) !== 1).map(([sid]) => `${sid}×${expiryNotes.get(sid) ?? 0}`);
      const strays = [...expiryNotes.keys()].filter((sid) => !this.expiredSessions.get(account.id)?.has(sid));
      if (unnoticed.length || strays.length) {
        this.fail('c: notifications', `final audit of ${account.id}: expired sessions without exactly one session_expired: ${unnoticed.slice(0, 5).join(', ') || 'none'}; session_expired of sessions not expired: ${strays.slice(0, 5).join(', ') || 'none'}`);
      }
      const missing = [...expected].filter((id) => !notified.has(id));
      const extra = [...notified].filter((id) => !ledger.transfers.has(id));
      if (missing.length || extra.length) {
        this.fail('c: notifications', `final audit of ${account.id}: recharges/sponsor transfers without a notification: ${missing.slice(0, 5).join(', ') || 'none'}; notifications without one: ${extra.slice(0, 5).join(', ') || 'none'}`);
      }
    }
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
    send: (client: Client, method: 'GET' | 'POST' | 'PUT' | 'PATCH', path: string, text: string | undefined, opts: { faults: boolean; giveUp: boolean; label: string; trace: string[] }) => this.send(client, method, path, text, opts),
    onAnswer: (req: Req, answer: Answer) => this.onAnswer(req, answer),
    markInDoubt: (req: Req) => this.markInDoubt(req),
    checkAccountItem: (accountId: string, what: string) => this.checkAccountItem(accountId, what),
    checkProblemShape: (answer: Answer, what: string) => this.checkProblemShape(answer, what),
    sessionFor: (sid: string, req: Req, serviceId: ServiceId) => this.sessionFor(sid, req, serviceId),
    noteSettings: (sa: AccountModel, body: Record<string, unknown>) => this.noteSettings(sa, body),
    noteSponsors: (account: AccountModel, sponsors: Array<{ accountId: string; priority: number; maxTransfer?: number }>) => this.noteSponsors(account, sponsors),
    account: (id: string) => this.accounts.get(id),
    trigger: (client: Client, trace: string[]) => this.runScheduled('trigger', client, trace),
    sweep: (client: Client, trace: string[]) => this.runScheduled('sweep', client, trace),
  };
}

// ------------------------------------------------------------------------------ clients

type Api = Simulation['api'];

class Client {
  private n = 0;
  /** Sessions this client believes active, and finished ones it may refund. */
  private active: SessionModel[] = [];
  private finished: SessionModel[] = [];
  /** Multi-party sessions this client proposed that wait for agreements. */
  private proposals: SessionModel[] = [];
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

  /**
   * A money account (never a service account: clients name owners). `members: false` leaves
   * out attached accounts: money comes to them from their main account only (top-ups and
   * sponsors are for the others).
   */
  private pickAccount({ members = true } = {}): AccountModel {
    const all = this.api.accounts().filter((a) => !a.owner && (members || !a.mainAccountId));
    const rich = all.filter((a) => !a.poor);
    return this.rng.chance(0.8) && rich.length ? this.rng.pick(rich) : this.rng.pick(all);
  }

  private remember(req: Req) {
    this.recent.push(req);
    if (this.recent.length > 60) this.recent.shift();
  }

  private refreshLists() {
    // A proposal that all parties agreed to is a session like the others; one released,
    // expired or walked away from is dropped (nothing of it can be refunded).
    const waiting: SessionModel[] = [];
    for (const s of this.proposals) {
      if (s.state === 'pending') waiting.push(s);
      else if (s.state === 'active') this.active.push(s);
    }
    this.proposals = waiting;
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
      recharge: 3, saPut: 0.7, sponsors: 0.7, trigger: 1,
      propose: this.proposals.length >= 3 ? 0.5 : 2, agree: this.proposals.length ? 5 : 0, limit: 0.7, suspend: 0.4,
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
        case 'trigger': await this.api.trigger(this, trace); text = 'recharge-trigger'; break;
        case 'recharge': text = await this.recharge(trace); break;
        case 'saPut': text = await this.saPut(trace); break;
        case 'sponsors': text = await this.sponsors(trace); break;
        case 'propose': text = await this.propose(trace); break;
        case 'agree': text = await this.agree(trace); break;
        case 'limit': text = await this.limit(trace); break;
        case 'suspend': text = await this.suspend(trace); break;
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
    this.doing ??= this.describe(req);
    const answer = await this.api.send(this, req.method, req.path, req.text, {
      faults: opts.faults ?? true,
      giveUp: opts.giveUp ?? true,
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
    const a = this.pickAccount({ members: false });
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
      case 'data': return { units: this.rng.range(256, 8192) };
    }
  }

  /**
   * The account that pays for `serviceId` on `a`: its service account for it, if it has one;
   * an attached account without a consumption limit, its main account's (the paying
   * account's; a capped member pays money, within its limit).
   */
  private chargedFor(a: AccountModel, serviceId: ServiceId): string {
    const viaMain = a.mainAccountId && a.limitsEver.length === 0 ? this.api.account(a.mainAccountId)?.routes.get(serviceId) : undefined;
    return a.routes.get(serviceId) ?? viaMain ?? a.id;
  }

  private reserveReq(): Req {
    const a = this.pickAccount();
    const serviceId = this.rng.weighted({ voice: 6, sms: 2, wallet: 2, data: 3 } as Record<ServiceId, number>);
    const rid = this.rid('r');
    if (!this.multi || this.rng.chance(0.5)) this.multi = this.rng.chance(0.2) ? `ms-c${this.index}-${this.n}` : null;
    const body: Record<string, unknown> = { requestId: rid, accountId: a.id, clientId: `client-${this.index}`, serviceId, requested: this.requestedFor(serviceId), ...(this.multi ? { multiSessionId: this.multi } : {}) };
    return this.api.newReq('reserve', this.chargedFor(a, serviceId), rid, '/sessions', body);
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
      // A multi-party session grows its grant by units; loser-pays ends with the loser named.
      if (kind === 'update' && this.rng.chance(0.85)) body.requested = s.party ? this.partyRequested(s.serviceId) : this.requestedFor(s.serviceId);
      if (kind === 'debit' && s.party?.principle.type === 'loser-pays') body.outcome = { loser: this.rng.pick(s.party.ids) };
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
    if (!answer && kind === 'update' && (s.party || this.rng.chance(0.5))) s.state = 'abandoned'; // ...or sometimes just walks away (always from a multi-party one: the model follows its arithmetic step by step)
    if (answer?.status === 402 && kind === 'update') {
      // No credit left: terminate (reporting nothing more).
      const final = this.stepReq('debit', s);
      final.body = { requestId: final.rid, used: { units: 0 }, ...(final.body.outcome ? { outcome: final.body.outcome } : {}) };
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
    // Multi-party sessions are few: one finished is refunded half the time.
    const parties = candidates.filter((s) => s.party);
    const s = this.rng.pick(parties.length && this.rng.chance(0.5) ? parties : candidates);
    const left = s.charged - s.refunded;
    const rid = this.rid('f');
    const amount = this.rng.chance(0.1) ? left + this.rng.range(1, 5) : this.rng.range(1, left);
    const req = this.api.newReq('refund', s.accountId, rid, `/sessions/${s.sid}/refund`, { requestId: rid, amount, reason: 'goodwill' }, s.sid);
    req.amount = amount;
    // Sometimes another refund of the same session at once (review 23 of stop 28: two refunds
    // of one session never raced, so a lost update between them went unseen): together they
    // may ask more than is left, and then one of them is refused.
    const otherRid = this.rng.chance(0.2) ? this.rid('f') : null;
    const other = otherRid ? this.api.newReq('refund', s.accountId, otherRid, `/sessions/${s.sid}/refund`, { requestId: otherRid, amount: this.rng.range(1, left), reason: 'goodwill' }, s.sid) : null;
    if (other) other.amount = other.body.amount as number;
    const otherTrace: string[] = [];
    // While both are in flight, neither answer's refundedTotal can tell whether the other's
    // refund landed first: the session counts them in doubt meanwhile (seed 2811, op 3,561).
    if (other) { s.inDoubt.add(req.rid); s.inDoubt.add(other.rid); }
    const [answer, otherAnswer] = await Promise.all([this.exchange(req, trace), other ? this.exchange(other, otherTrace) : null]);
    if (other) for (const r of [req, other]) if (!r.inDoubt) s.inDoubt.delete(r.rid);
    if (other) trace.push(`and at once ${this.describe(other)}: ${otherTrace.join(' ')}`);
    if (answer && amount > left && s.inDoubt.size === 0 && answer.status !== 409) this.api.fail('refund', `refund of ${amount} > refundable ${left} answered ${answer.status}`);
    if (other && answer?.status === 200 && otherAnswer?.status === 200 && amount + other.amount! > left && s.inDoubt.size === 0) {
      this.api.fail('refund', `two refunds of ${amount} and ${other.amount} at once, ${left} refundable: both answered 200`);
    }
    this.remember(req);
    if (other) this.remember(other);
    return this.describe(req);
  }

  private ddReq(a = this.pickAccount()): Req {
    const rid = this.rid('e');
    const serviceId = this.rng.weighted({ sms: 5, wallet: 3, data: 2 } as Record<ServiceId, number>);
    const units = serviceId === 'sms' ? this.rng.range(1, 4) : serviceId === 'data' ? this.rng.range(10, 3000) : this.rng.range(5, 200);
    // Sometimes an SMS event asks for an amount: the units it buys (whole events), charged their
    // price; routed to a service account, the same units from its bundle (as a routed reserve's amount).
    const byAmount = serviceId === 'sms' && this.rng.chance(0.2);
    const amount = byAmount ? units * SERVICES.sms.amount + this.rng.int(SERVICES.sms.amount) : units;
    const body = serviceId === 'wallet'
      ? { requestId: rid, accountId: a.id, clientId: `app-${this.index}`, serviceId, amount: units }
      : byAmount
        ? { requestId: rid, accountId: a.id, clientId: `${serviceId}c-${this.index}`, serviceId, amount }
        : { requestId: rid, accountId: a.id, clientId: `${serviceId}c-${this.index}`, serviceId, units };
    const charged = this.chargedFor(a, serviceId);
    const routed = charged !== a.id;
    const req = this.api.newReq('dd', charged, rid, '/debits', body);
    req.units = units;
    req.amount = costOf(serviceId, req.units, routed);
    return req;
  }

  private async directDebit(trace: string[]) {
    const req = this.ddReq();
    await this.exchange(req, trace);
    this.remember(req);
    return this.describe(req);
  }

  private async read(trace: string[]) {
    const choice = this.rng.int(8);
    const a = this.pickAccount();
    const s = this.active.length || this.finished.length ? this.rng.pick([...this.active, ...this.finished]) : null;
    const sa = a.routes.size ? this.api.account(this.rng.pick([...a.routes.values()]))! : null;
    let path = `/accounts/${a.id}`;
    if (choice === 1 && s) path = `/sessions/${s.sid}`;
    if (choice === 2) path = `/accounts/${a.id}/ledger?limit=${this.rng.range(1, 50)}`;
    if (choice === 3 && s) path = `/multi-sessions/${s.multiSessionId ?? s.sid}`;
    if (choice === 4) path = `/services/${this.rng.pick(['voice', 'sms', 'wallet', 'data'])}`;
    if (choice === 5) path = `/accounts/${a.id}/notifications`;
    if (choice === 6 && sa) path = `/accounts/${a.id}/service-accounts/${sa.classification}`;
    if (choice === 7 && sa) path = `/accounts/${a.id}/service-accounts/${sa.classification}/ledger?limit=${this.rng.range(1, 50)}`;
    const sponsorsMark = a.sponsorPatches.mark();
    const answer = await this.api.send(this, 'GET', path, undefined, { faults: true, giveUp: true, label: `GET ${path}`, trace });
    if (!answer) return `GET ${path}`;
    this.api.checkProblemShape(answer, `GET ${path}`);
    if (answer.status !== 200) this.api.fail('unexpected answer', `GET ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
    const b = answer.body;
    const saArithmetic = (v: any) => v && v.available === v.balance - v.reserved && v.available >= 0 && v.reserved >= 0;
    if (path.endsWith('/notifications')) {
      if (!Array.isArray(b.notifications) || b.notifications.some((n: any) => n.accountId !== a.id || typeof n.type !== 'string')) this.api.fail('unexpected answer', `GET ${path}: ${JSON.stringify(b).slice(0, 300)}`);
    } else if (path.includes('/service-accounts/') && !path.includes('ledger')) {
      if (!saArithmetic(b) || b.classification !== sa!.classification || b.unit !== sa!.unit || !isDeepStrictEqual(b.rate, sa!.rate)) this.api.fail('b: account arithmetic', `GET ${path}: ${JSON.stringify(b)}`);
    } else if (path.startsWith('/accounts/') && !path.includes('ledger')) {
      if (b.available !== b.balance - b.reserved + b.creditLimit || b.available < 0 || b.currency !== a.currency || b.mainAccountId !== a.mainAccountId
        || (a.mainAccountId && !Number.isSafeInteger(b.consumed))) this.api.fail('b: account arithmetic', `GET ${path}: ${JSON.stringify(b)}`);
      const listed = Array.isArray(b.serviceAccounts) ? b.serviceAccounts.map((v: any) => v.classification).sort() : null;
      if (!isDeepStrictEqual(listed, [...a.routes.keys()].sort()) || b.serviceAccounts.some((v: any) => !saArithmetic(v))) {
        this.api.fail('b: account arithmetic', `GET ${path}: service accounts ${JSON.stringify(b.serviceAccounts)}, the model has ${[...a.routes.keys()].join(', ') || 'none'}`);
      }
      if (a.sponsorPatches.settled(sponsorsMark) && !isDeepStrictEqual(b.sponsors ?? [], a.sponsors)) {
        this.api.fail('unexpected answer', `GET ${path}: sponsors ${JSON.stringify(b.sponsors)}, last set ${JSON.stringify(a.sponsors)}`);
      }
    } else if (path.includes('ledger')) {
      if (!Array.isArray(b.entries) || b.entries.some((e: any) => !Number.isSafeInteger(e.amount))) this.api.fail('unexpected answer', `GET ${path}: ${JSON.stringify(b).slice(0, 300)}`);
    } else if (path.startsWith('/sessions/')) {
      // A release shows as closed with released: true, for good; a debit or an expiry never does.
      if (!['active', 'closed', 'expired', 'pending_agreement'].includes(b.state) || (s!.state === 'released' && (b.state !== 'closed' || b.released !== true))
        || (b.released === true && ['closed', 'expired'].includes(s!.state)) || b.charged.amount < s!.charged) this.api.fail('unexpected answer', `GET ${path}: ${JSON.stringify(b)} (answers said charged ${s!.charged})`);
    } else if (path.startsWith('/multi-sessions/')) {
      if (!Array.isArray(b.sessions) || b.sessions.length < 1 || !Number.isSafeInteger(b.charged?.amount)) this.api.fail('unexpected answer', `GET ${path}: ${JSON.stringify(b).slice(0, 300)}`);
    }
    return `GET ${path}`;
  }

  /** A manual recharge of one of an owner's service accounts (money out of the owner, units in). */
  private async recharge(trace: string[]) {
    const req = this.rechargeReq();
    if (!req) return this.topup(trace);
    await this.exchange(req, trace);
    this.remember(req);
    return this.describe(req);
  }

  private rechargeReq(): Req | null {
    const owners = this.api.accounts().filter((x) => x.routes.size);
    if (owners.length === 0) return null;
    const a = this.rng.pick(owners);
    const sa = this.api.account(this.rng.pick([...a.routes.values()]))!;
    const rid = this.rid('g');
    const smallest = Math.ceil(sa.rate!.amount / sa.rate!.units);
    // Mostly an amount; sometimes none (the rechargeAmount), rarely one that buys nothing (400).
    const pick = this.rng.next();
    const amount = pick < 0.2 ? undefined : pick < 0.23 && smallest > 1 ? this.rng.range(1, smallest - 1) : this.rng.range(smallest, a.poor ? 120 : 600);
    const req = this.api.newReq('recharge', a.id, rid, `/accounts/${a.id}/service-accounts/${sa.classification}/recharge`, { requestId: rid, ...(amount !== undefined ? { amount } : {}) });
    req.amount = amount;
    req.sa = sa.id;
    return req;
  }

  /** PUT on an existing service account: new priority, levels, recharge amount, schedule, onEmpty (never its unit or rate). */
  private async saPut(trace: string[]) {
    const owners = this.api.accounts().filter((x) => x.routes.size);
    if (owners.length === 0) return this.topup(trace);
    const a = this.rng.pick(owners);
    const sa = this.api.account(this.rng.pick([...a.routes.values()]))!;
    const spec = SERVICE_ACCOUNTS[sa.classification!]!;
    const onEmpty = this.rng.pick(['deny', 'redirect', 'restrict'] as const);
    const automatic = this.rng.chance(0.8);
    const body: Record<string, unknown> = {
      unit: spec.unit, rate: spec.rate, priority: this.rng.int(5), onEmpty,
      ...(onEmpty === 'redirect' ? { redirectUrl: `https://shop.example/${sa.classification}` } : {}),
      ...(automatic ? { minimumLevel: this.rng.int(3) * (spec.settings.minimumLevel as number), rechargeAmount: this.rng.range(1, 4) * (spec.settings.rechargeAmount as number) } : {}),
      ...(automatic && this.rng.chance(0.5) ? { schedule: { every: 'day', at: this.rng.int(24) } } : {}),
    };
    const path = `/accounts/${a.id}/service-accounts/${sa.classification}`;
    const text = JSON.stringify(body);
    this.doing = `PUT ${path} ${text}`;
    this.api.noteSettings(sa, body);
    const { result: answer, alone } = await sa.puts.run(() => this.api.send(this, 'PUT', path, text, { faults: true, giveUp: false, label: `PUT ${path}`, trace }));
    this.api.checkProblemShape(answer!, `PUT ${path}`);
    const b = answer!.body;
    const settings = (v: any) => ({ priority: v.priority, onEmpty: v.onEmpty, redirectUrl: v.redirectUrl, minimumLevel: v.minimumLevel, rechargeAmount: v.rechargeAmount, schedule: v.schedule });
    if (answer!.status !== 200 || b.accountId !== a.id || b.classification !== sa.classification || b.unit !== sa.unit || !isDeepStrictEqual(b.rate, sa.rate)
      || b.available !== b.balance - b.reserved || b.available < 0 || (alone && !isDeepStrictEqual(settings(b), settings(body)))) {
      this.api.fail('unexpected answer', `PUT ${path} ${text}: ${answer!.status} ${JSON.stringify(b)}`);
    }
    return `PUT ${path} ${text}`;
  }

  /** PATCH the sponsors of an account: none, or one or two accounts (rarely one of another currency: 409, nothing changes). */
  private async sponsors(trace: string[]) {
    const a = this.pickAccount({ members: false });
    const all = this.api.accounts().filter((x) => !x.owner && !x.mainAccountId && x !== a);
    const same = all.filter((x) => x.currency === a.currency);
    const other = all.filter((x) => x.currency !== a.currency);
    const mixed = other.length > 0 && this.rng.chance(0.1);
    const count = mixed ? 1 : same.length === 0 || this.rng.chance(0.15) ? 0 : this.rng.range(1, 2);
    const chosen = mixed ? [this.rng.pick(other)] : [...new Set(Array.from({ length: count }, () => this.rng.pick(same)))];
    // Some capped per transfer (maxTransfer): a transfer past a sponsor's cap is an audit failure.
    const sponsors = chosen.map((x) => ({ accountId: x.id, priority: this.rng.int(5), ...(this.rng.chance(0.3) ? { maxTransfer: this.rng.range(50, 2000) } : {}) }));
    const path = `/accounts/${a.id}`;
    const text = JSON.stringify({ sponsors });
    this.doing = `PATCH ${path} ${text}`;
    if (!mixed) this.api.noteSponsors(a, sponsors);
    // A PATCH naming a sponsor in another currency is refused and changes nothing: not a write.
    const send = () => this.api.send(this, 'PATCH', path, text, { faults: true, giveUp: false, label: `PATCH ${path}`, trace });
    const { result: answer, alone } = mixed ? { result: await send(), alone: false } : await a.sponsorPatches.run(send);
    this.api.checkProblemShape(answer!, `PATCH ${path}`);
    const b = answer!.body;
    if (mixed) {
      if (answer!.status !== 409 || b.code !== 'conflict') this.api.fail('unexpected answer', `PATCH ${path} ${text} (a sponsor in another currency): ${answer!.status} ${JSON.stringify(b)}`);
    } else if (answer!.status !== 200 || b.accountId !== a.id || b.available !== b.balance - b.reserved + b.creditLimit
      || (alone && !isDeepStrictEqual(b.sponsors ?? [], sponsors))) {
      this.api.fail('unexpected answer', `PATCH ${path} ${text}: ${answer!.status} ${JSON.stringify(b)}`);
    }
    return `PATCH ${path} ${text}`;
  }

  private partyRequested(serviceId: ServiceId): { units: number } {
    return { units: serviceId === 'voice' ? this.rng.range(30, 900) : this.rng.range(5, 300) };
  }

  /** The principle of a new multi-party session; shares are whole percents adding up to 100. */
  private principleFor(ids: string[]): Principle {
    const type = this.rng.weighted({ 'loser-pays': 3, split: 3, 'initiator-pays': 2, shares: 2 });
    if (type !== 'shares') return { type } as Principle;
    const shares: Record<string, number> = {};
    let left = 100;
    ids.forEach((id, i) => {
      const share = i === ids.length - 1 ? left : this.rng.range(1, left - (ids.length - 1 - i));
      shares[id] = share;
      left -= share;
    });
    return { type, shares };
  }

  /**
   * Proposes a multi-party session (seed 000): two or three accounts of one currency
   * (attached accounts too: they pay through their main account), a principle, a game on
   * voice or wallet. It waits in `proposals` for its parties to agree.
   */
  private async propose(trace: string[]) {
    const first = this.pickAccount();
    const others = this.api.accounts().filter((x) => !x.owner && x.currency === first.currency && x !== first);
    if (others.length === 0) return this.reserve(trace);
    const ids = [first.id, ...new Set(Array.from({ length: this.rng.chance(0.7) ? 1 : 2 }, () => this.rng.pick(others).id))];
    const serviceId: ServiceId = this.rng.chance(0.6) ? 'voice' : 'wallet';
    const rid = this.rid('p');
    const body = { requestId: rid, parties: ids.map((accountId) => ({ accountId })), principle: this.principleFor(ids), clientId: `game-${this.index}`, serviceId, requested: this.partyRequested(serviceId) };
    const req = this.api.newReq('propose', first.id, rid, '/sessions', body);
    await this.exchange(req, trace);
    this.remember(req);
    if (req.first?.status === 201) {
      const s = this.api.sessions.get(sessionIdFor(rid))!;
      if (s.client === -1) {
        s.client = this.index;
        this.proposals.push(s);
        // Half the games start at once: their parties agree in this very operation.
        if (this.rng.chance(0.5)) return `${this.describe(req)} ; ${await this.agreeTo(s, trace, true)}`;
      }
    }
    return this.describe(req);
  }

  /**
   * One party of a waiting proposal agrees; the last one activates it (or is refused with a
   * 402 naming the party that cannot pay: then one of them agrees again later, perhaps after
   * a top-up). Sometimes the proposal is withdrawn instead (a release while it waits).
   */
  private async agree(trace: string[]) {
    return this.agreeTo(this.rng.pick(this.proposals), trace, this.rng.chance(0.7));
  }

  private async agreeTo(s: SessionModel, trace: string[], together: boolean) {
    const party = s.party!;
    if (this.rng.chance(0.05)) {
      const req = this.stepReq('release', s);
      const answer = await this.exchange(req, trace);
      if (!answer) s.state = 'abandoned';
      this.remember(req);
      return this.describe(req);
    }
    // The parties of a game mostly agree within moments of each other (`together`: all in this
    // one operation), else one at a time: between one client's operations the simulated clock
    // moves on by minutes, and a proposal agreed one party per operation mostly lapses first.
    const described: string[] = [];
    do {
      const notYet = party.ids.filter((id) => !party.agreed.has(id));
      const accountId = notYet.length ? notYet[0]! : this.rng.pick(party.ids);
      const rid = this.rid('a');
      const req = this.api.newReq('agree', accountId, rid, `/sessions/${s.sid}/agree`, { requestId: rid, accountId }, s.sid);
      const answer = await this.exchange(req, trace);
      this.remember(req);
      described.push(this.describe(req));
      // The last agreement given up: the session may be active or not; the client walks away.
      if (!answer && notYet.length <= 1) s.state = 'abandoned';
      if (!answer || answer.status !== 200 || notYet.length <= 1) break;
    } while (together);
    return described.join(' ; ');
  }

  /** PATCH the consumption limit of an attached account that has one: it binds the next grant. */
  private async limit(trace: string[]) {
    const members = this.api.accounts().filter((x) => x.mainAccountId && x.limitsEver.length);
    if (members.length === 0) return this.topup(trace);
    const a = this.rng.pick(members);
    const limit = this.rng.range(1, 10) * 100;
    const path = `/accounts/${a.id}`;
    const text = JSON.stringify({ consumptionLimit: limit });
    this.doing = `PATCH ${path} ${text}`;
    // Noted before it is sent: a concurrent grant may already be bound by it.
    a.limitsEver.push(limit);
    a.limit = limit;
    const { result: answer, alone: last } = await a.limitPatches.run(() => this.api.send(this, 'PATCH', path, text, { faults: true, giveUp: false, label: `PATCH ${path}`, trace }));
    this.api.checkProblemShape(answer!, `PATCH ${path}`);
    const b = answer!.body;
    if (answer!.status !== 200 || b.accountId !== a.id || b.mainAccountId !== a.mainAccountId || !Number.isSafeInteger(b.consumed)
      || b.available !== b.balance - b.reserved + b.creditLimit || (last && b.consumptionLimit !== limit)) {
      this.api.fail('unexpected answer', `PATCH ${path} ${text}: ${answer!.status} ${JSON.stringify(b)}`);
    }
    return `PATCH ${path} ${text}`;
  }

  /**
   * Suspends an account (not a member, not a service account) and makes it active again, while
   * the other clients go on: meanwhile its charges, its members' and its games' may be refused
   * 403 account_inactive (the model tolerates that only for requests a suspension may have met).
   */
  private async suspend(trace: string[]) {
    const candidates = this.api.accounts().filter((x) => !x.owner && !x.mainAccountId && !x.suspended);
    if (candidates.length === 0) return this.topup(trace);
    const a = this.rng.pick(candidates);
    const path = `/accounts/${a.id}`;
    a.suspensions = (a.suspensions ?? 0) + 1;
    a.suspended = true;
    for (const status of ['suspended', 'active'] as const) {
      const text = JSON.stringify({ status });
      const answer = await this.api.send(this, 'PATCH', path, text, { faults: true, giveUp: false, label: `PATCH ${path}`, trace });
      this.api.checkProblemShape(answer!, `PATCH ${path}`);
      // An account past its validUntil shows `expired` once active again.
      const shown = status === 'active' && a.validUntilMs !== undefined && a.validUntilMs <= this.api.now() ? 'expired' : status;
      if (answer!.status !== 200 || answer!.body?.accountId !== a.id || answer!.body?.status !== shown) {
        this.api.fail('unexpected answer', `PATCH ${path} ${text}: ${answer!.status} ${JSON.stringify(answer!.body)}`);
      }
      if (status === 'suspended') {
        this.api.advance(this.rng.int(30)); // a while suspended
        // Meanwhile an event of the account, or of one of its members, must be refused (the
        // model otherwise only tolerates a 403 during a suspension; review 23 of stop 28: a
        // suspension that did not reach the members went unseen). Its retries within this
        // exchange are sent during the suspension too.
        const target = a.members.length && this.rng.chance(0.5) ? this.api.account(this.rng.pick(a.members))! : a;
        const req = this.ddReq(target);
        req.mustBeRefused = true;
        await this.exchange(req, trace);
        req.mustBeRefused = false;
        this.remember(req);
      }
    }
    a.suspended = false;
    return `PATCH ${path} suspended, then active`;
  }

  /** Resends a past request (same requestId and body): it must answer as it first did. */
  private async duplicate(trace: string[]) {
    const candidates = this.recent;
    if (candidates.length === 0) return this.topup(trace);
    const req = this.rng.pick(candidates);
    trace.push('dup:');
    await this.exchange(req, trace, { giveUp: false });
    if (req.kind === 'reserve') this.adopt(req);
    return `duplicate of ${this.describe(req)}`;
  }

  /** The same new request delivered two or three times at once. */
  private async concurrent(trace: string[]) {
    const which = this.rng.int(5);
    let req: Req;
    const recharge = which === 4 ? this.rechargeReq() : null;
    if (recharge) req = recharge;
    else if (which === 0 && this.active.length) req = this.stepReq(this.rng.chance(0.7) ? 'update' : 'debit', this.rng.pick(this.active));
    else if (which === 1) req = this.ddReq();
    else if (which === 2) {
      const a = this.pickAccount({ members: false });
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
    const candidates = this.recent.filter((r) => r.first);
    if (candidates.length === 0) return this.directDebit(trace);
    const original = this.rng.pick(candidates);
    let path = original.path;
    const body: Record<string, unknown> = structuredClone(original.body);
    switch (original.kind) {
      case 'topup':
        if (this.rng.chance(0.3)) {
          // Cross-kind: the top-up's requestId on a direct debit.
          path = '/debits';
          Object.assign(body, { accountId: original.accountId, clientId: 'smsc-x', serviceId: 'sms', units: 1 });
          delete body.amount;
        } else body.amount = (body.amount as number) + 1;
        break;
      // Some reuses carry a body that would be refused if it were new (an amount for a service
      // rated in units, an amount below one block's price): idempotency_conflict must win.
      case 'dd':
        if (this.rng.chance(0.3)) { path = `/accounts/${ownerOf(original.accountId)}/topup`; for (const k of Object.keys(body)) if (k !== 'requestId') delete body[k]; body.amount = 7; }
        else if ('units' in body && this.rng.chance(0.3)) { delete body.units; body.amount = 1; }
        else if ('units' in body) body.units = (body.units as number) + 1;
        else body.amount = (body.amount as number) + 1;
        break;
      case 'agree': {
        // Another party agreeing under this requestId.
        const parties = this.api.sessions.get(original.sid!)!.party!.ids.filter((id) => id !== body.accountId);
        body.accountId = this.rng.pick(parties);
        break;
      }
      case 'propose': {
        // Shares that do not add up to 100 would be refused if the body were new.
        const ids = (body.parties as Array<{ accountId: string }>).map((p) => p.accountId);
        if (this.rng.chance(0.3)) body.principle = { type: 'shares', shares: Object.fromEntries(ids.map((id) => [id, 1])) };
        else (body.requested as { units: number }).units += 1;
        break;
      }
      case 'reserve': {
        if (this.rng.chance(0.3) && !isDeepStrictEqual(body.requested, { amount: 1 })) { body.requested = { amount: 1 }; break; }
        const requested = body.requested as Record<string, number>;
        const k = Object.keys(requested)[0]!;
        requested[k] = requested[k]! + 1;
        break;
      }
      case 'update':
      case 'debit':
        body.used = { units: ((body.used as { units: number }).units) + 1 };
        break;
      case 'release':
      case 'refund':
      case 'recharge':
        body.amount = ((body.amount as number | undefined) ?? 0) + 1;
        break;
    }
    const text = JSON.stringify(body);
    trace.push('reuse:');
    this.doing = `reuse of ${original.rid} on POST ${path} ${text}`;
    const answer = await this.api.send(this, 'POST', path, text, { faults: true, giveUp: false, label: `reuse ${original.rid}`, trace });
    this.api.checkProblemShape(answer!, `reuse ${path} ${text}`);
    if ((answer!.status !== 409 || answer!.body?.code !== 'idempotency_conflict')) {
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
