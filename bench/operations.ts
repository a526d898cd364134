// Every other operation of the API at concurrency 32, by calling the store functions as the
// handlers do: refunds (of a closed session with an amount; of an active one without, which
// releases it), event charges, top-ups, manual service-account recharges, a session on a
// service account, a multi-party session (propose → agree → agree → debit) and a session of
// an attached account.
//
// An operation that needs something to exist first (a closed or active session to refund)
// gets it from a preparation phase that is not measured: the measured phase runs only the
// operation, so its ops/s is that operation's own.
import { randomUUID } from 'node:crypto';
import type { Db, Store } from '../functions/store/db.js';
import { putService } from '../functions/store/services.js';
import { createAccount, topUp } from '../functions/store/accounts.js';
import { debitSession, refundSession, reserve, updateSession } from '../functions/store/sessions.js';
import { directDebit } from '../functions/store/debits.js';
import { manualRecharge, putServiceAccount } from '../functions/store/serviceAccounts.js';
import { agree, proposePartySession } from '../functions/store/parties.js';
import type { ServiceAccountSettings } from '../functions/domain/serviceAccount.js';
import { summarize, type Sample } from './stats.js';
import {
  CONCURRENCY, TOPUP_MINOR, commonBreakdown, envInt, envNum, errorsText, expectStatus, fmt, inBatches, makeAccounts,
  runPhase, table, timed, voice, type PhaseResult,
} from './common.js';

/** Cycles per measured phase (a cycle is one operation, or one session of 3–4 operations). */
const OPS_CYCLES = envInt('BENCH_OPS_CYCLES', 1_000);
/** Time cap of each measured phase, and of each preparation phase, in seconds. */
const OPS_SECONDS = envNum('BENCH_OPS_SECONDS', 6);
const OPS_PREPARE_SECONDS = envNum('BENCH_OPS_PREPARE_SECONDS', 8);
/** Accounts per operation (fresh for each, so no phase inherits another's account items). */
const OPS_ACCOUNTS = envInt('BENCH_OPS_ACCOUNTS', CONCURRENCY);

/** Data, rated per kilobyte; the owners below keep a service account for it (seed 004). */
const data = { serviceId: 'data', unit: 'kilobytes' as const, price: { amountMinor: 100, perUnits: 1024 }, validitySeconds: 300, interimIntervalSeconds: 30 };
/** 1.00 buys 1024 KB; no minimum level, so no threshold recharge runs while measuring. */
const dataAccount: ServiceAccountSettings = { unit: 'kilobytes', rate: { amountMinor: 100, units: 1024 }, priority: 1, onEmpty: 'deny' };

export interface OperationResult {
  operation: string;
  /** How the operation was called, in a few words. */
  how: string;
  phase: PhaseResult<string>;
  names: readonly string[];
  /** The preparation phase, when there was one: how many items it made, in how long. */
  prepared?: { made: number; wallMs: number; errors: Map<string, number> };
}

type Record_ = (name: string, sample: Sample) => void;

export async function runOperations(shared: Db, base: Store): Promise<OperationResult[]> {
  const results: OperationResult[] = [];
  const run = randomUUID().slice(0, 6);
  await putService(base, data);
  const measure = (label: string, accounts: number, names: readonly string[],
    cycle: (worker: number, index: number, record: Record_) => Promise<void>, cycles = OPS_CYCLES) =>
    runPhase<string>({ label, concurrency: CONCURRENCY, accounts, cycles, seconds: OPS_SECONDS, names, cycle });
  /** Makes up to `count` items from CONCURRENCY workers within the preparation time cap. */
  const prepare = async <T>(label: string, count: number, make: (worker: number, index: number) => Promise<T>) => {
    const items: T[] = [];
    const phase = await runPhase<never>({
      label: `${label} (prep)`, concurrency: CONCURRENCY, accounts: 0, cycles: count, seconds: OPS_PREPARE_SECONDS, names: [],
      cycle: async (worker, index) => { items.push(await make(worker, index)); },
    });
    return { items, prepared: { made: items.length, wallMs: phase.wallMs, errors: phase.errors } };
  };
  const call = (requestId: string, accountId: string, serviceId = voice.serviceId, units = 600) =>
    ({ requestId, accountId, clientId: 'bench', serviceId, requested: { units } });

  // ------------------------------------------------------------------ refund of a closed session
  {
    const accounts = await makeAccounts(base, `refc-${run}`, OPS_ACCOUNTS);
    const { items, prepared } = await prepare('refund closed', OPS_CYCLES, async (worker, index) => {
      const rid = `${run}-refc-${worker}-${index}`;
      const r = await reserve(base, call(`${rid}-r`, accounts[worker % accounts.length]!), `${rid}-r`);
      expectStatus('reserve', r, 201);
      const sessionId = r.body.sessionId as string;
      expectStatus('debit', await debitSession(base, sessionId, { requestId: `${rid}-d`, usedUnits: 90 }, `${rid}-d`), 200);
      return sessionId; // charged 4 (90 s = 2 started minutes at 2)
    });
    const phase = await measure('refund closed', accounts.length, ['refund'], async (_worker, index, record) => {
      const sessionId = items[index]!;
      const rid = `${run}-refc-${index}-refund`;
      const a = await timed(shared, base, (store) => refundSession(store, sessionId, { requestId: rid, amount: 1, reason: 'bench' }, rid));
      expectStatus('refund', a.value, 200);
      record('refund', a.sample);
    }, items.length);
    results.push({ operation: 'refund (closed session, amount 1)', how: 'refundSession after reserve → debit', phase, names: ['refund'], prepared });
  }

  // ----------------------------------------------- refund of an active session without amount (release)
  {
    const accounts = await makeAccounts(base, `refa-${run}`, OPS_ACCOUNTS);
    const { items, prepared } = await prepare('refund active', OPS_CYCLES, async (worker, index) => {
      const rid = `${run}-refa-${worker}-${index}`;
      const r = await reserve(base, call(`${rid}-r`, accounts[worker % accounts.length]!), `${rid}-r`);
      expectStatus('reserve', r, 201);
      return r.body.sessionId as string;
    });
    const phase = await measure('refund active', accounts.length, ['release'], async (_worker, index, record) => {
      const sessionId = items[index]!;
      const rid = `${run}-refa-${index}-release`;
      const a = await timed(shared, base, (store) => refundSession(store, sessionId, { requestId: rid }, rid));
      expectStatus('release', a.value, 200);
      record('release', a.sample);
    }, items.length);
    results.push({ operation: 'refund (active session, no amount)', how: 'refundSession after reserve: releases it', phase, names: ['release'], prepared });
  }

  // ------------------------------------------------------------------------------ event charge
  {
    const accounts = await makeAccounts(base, `evt-${run}`, OPS_ACCOUNTS);
    const phase = await measure('direct debit', accounts.length, ['event'], async (worker, index, record) => {
      const rid = `${run}-evt-${worker}-${index}`;
      const a = await timed(shared, base, (store) => directDebit(store, { requestId: rid, accountId: accounts[worker % accounts.length]!, clientId: 'bench', serviceId: voice.serviceId, units: 60 }, rid));
      expectStatus('direct debit', a.value, 201);
      record('event', a.sample);
    });
    results.push({ operation: 'direct debit (event charge)', how: 'directDebit, 60 s of voice', phase, names: ['event'] });
  }

  // ----------------------------------------------------------------------------------- top-up
  {
    const accounts = await makeAccounts(base, `top-${run}`, OPS_ACCOUNTS);
    const phase = await measure('top-up', accounts.length, ['top-up'], async (worker, index, record) => {
      const rid = `${run}-top-${worker}-${index}`;
      const a = await timed(shared, base, (store) => topUp(store, accounts[worker % accounts.length]!, rid, 100, rid));
      expectStatus('top-up', a.value, 200);
      record('top-up', a.sample);
    });
    results.push({ operation: 'top-up', how: 'topUp of 100', phase, names: ['top-up'] });
  }

  // -------------------------------------------------------------- manual service-account recharge
  {
    const owners = await makeAccounts(base, `rch-${run}`, OPS_ACCOUNTS);
    await inBatches(owners, 8, async (owner) => { await putServiceAccount(base, owner, data.serviceId, dataAccount); });
    const phase = await measure('manual recharge', owners.length, ['recharge'], async (worker, index, record) => {
      const rid = `${run}-rch-${worker}-${index}`;
      const a = await timed(shared, base, (store) => manualRecharge(store, owners[worker % owners.length]!, data.serviceId, { requestId: rid, amountMinor: 100 }, rid));
      expectStatus('recharge', a.value, 200);
      record('recharge', a.sample);
    });
    results.push({ operation: 'manual recharge (service account)', how: 'manualRecharge of 100 after putServiceAccount', phase, names: ['recharge'] });
  }

  // --------------------------------------------------------------- a session on a service account
  {
    const owners = await makeAccounts(base, `sas-${run}`, OPS_ACCOUNTS);
    await inBatches(owners, 8, async (owner) => {
      await putServiceAccount(base, owner, data.serviceId, dataAccount);
      // 10,000,000 cents of units: far more than any phase draws.
      await manualRecharge(base, owner, data.serviceId, { requestId: `fill-${owner}`, amountMinor: TOPUP_MINOR / 100 }, `fill-${owner}`);
    });
    const names = ['reserve', 'update', 'debit'] as const;
    const phase = await measure('svc-account session', owners.length, names, (worker, index, record) =>
      sessionCycle(shared, base, record, `${run}-sas-${worker}-${index}`, call('', owners[worker % owners.length]!, data.serviceId, 2048), 1024, 512));
    results.push({ operation: 'session on a service account', how: 'reserve 2048 KB → update 1024 → debit 512, serviceId = classification', phase, names });
  }

  // ------------------------------------------------------------------------ multi-party session
  {
    // Each worker plays its own pair of parties, so two games never share an account item.
    const players = await makeAccounts(base, `mp-${run}`, 2 * OPS_ACCOUNTS);
    const names = ['propose', 'agree (first)', 'agree (last)', 'debit'] as const;
    const phase = await measure('multi-party', players.length, names, async (worker, index, record) => {
      const pair = worker % OPS_ACCOUNTS;
      const parties = [players[2 * pair]!, players[2 * pair + 1]!];
      const rid = `${run}-mp-${worker}-${index}`;
      const p = await timed(shared, base, (store) => proposePartySession(store, { requestId: `${rid}-p`, parties, principle: { type: 'split' }, clientId: 'bench', serviceId: voice.serviceId, requested: { units: 600 } }, `${rid}-p`));
      expectStatus('propose', p.value, 201);
      record('propose', p.sample);
      const sessionId = p.value.body.sessionId as string;
      const first = await timed(shared, base, (store) => agree(store, sessionId, { requestId: `${rid}-a0`, accountId: parties[0]! }, `${rid}-a0`));
      expectStatus('agree', first.value, 200);
      record('agree (first)', first.sample);
      const last = await timed(shared, base, (store) => agree(store, sessionId, { requestId: `${rid}-a1`, accountId: parties[1]! }, `${rid}-a1`));
      expectStatus('agree', last.value, 200);
      if (last.value.body.state !== 'active') throw new Error(`the last agreement left the session ${String(last.value.body.state)}`);
      record('agree (last)', last.sample);
      const d = await timed(shared, base, (store) => debitSession(store, sessionId, { requestId: `${rid}-d`, usedUnits: 300 }, `${rid}-d`));
      expectStatus('debit', d.value, 200);
      record('debit', d.sample);
    });
    results.push({ operation: 'multi-party session (2 parties, split)', how: 'propose → agree → agree (reserves both) → debit 300 s', phase, names });
  }

  // --------------------------------------------------------------- a session of an attached account
  {
    // Members in families of 8: each main account pays for 8 members charging at once.
    const mains = await makeAccounts(base, `fam-${run}`, Math.max(1, Math.ceil(OPS_ACCOUNTS / 8)));
    const members = Array.from({ length: OPS_ACCOUNTS }, (_, i) => `famm-${run}-${i}`);
    await inBatches(members, 8, async (accountId) => {
      const i = Number(accountId.slice(accountId.lastIndexOf('-') + 1));
      await createAccount(base, { accountId, currency: 'EUR', kind: 'prepaid', mainAccountId: mains[i % mains.length]! });
    });
    const names = ['reserve', 'update', 'debit'] as const;
    const phase = await measure('attached session', members.length, names, (worker, index, record) =>
      sessionCycle(shared, base, record, `${run}-fam-${worker}-${index}`, call('', members[worker % members.length]!), 90, 30));
    results.push({ operation: `session of an attached account (${members.length} members, ${mains.length} main)`, how: 'reserve 600 s → update 90 → debit 30, allotments from the main account', phase, names });
  }
  return results;
}

/** reserve → update → debit, each timed and recorded. */
async function sessionCycle(shared: Db, base: Store, record: Record_, rid: string,
  opening: { accountId: string; clientId: string; serviceId: string; requested: { units: number } }, updateUsed: number, debitUsed: number) {
  const r = await timed(shared, base, (store) => reserve(store, { ...opening, requestId: `${rid}-r` }, `${rid}-r`));
  expectStatus('reserve', r.value, 201);
  record('reserve', r.sample);
  const sessionId = r.value.body.sessionId as string;
  const u = await timed(shared, base, (store) => updateSession(store, sessionId, { requestId: `${rid}-u`, usedUnits: updateUsed, requested: opening.requested }, `${rid}-u`));
  expectStatus('update', u.value, 200);
  record('update', u.sample);
  const d = await timed(shared, base, (store) => debitSession(store, sessionId, { requestId: `${rid}-d`, usedUnits: debitUsed }, `${rid}-d`));
  expectStatus('debit', d.value, 200);
  record('debit', d.sample);
}

// ------------------------------------------------------------------------------- report

export function operationsReport(results: OperationResult[]): string {
  const out: string[] = [];
  out.push(`Every other operation, c=${CONCURRENCY}: store functions called directly, DynamoDB calls counted per operation`);
  out.push('ops/s = successful ops of that type / wall time of its measured phase (preparation not included).');
  out.push('');
  const rows: string[][] = [];
  for (const r of results) {
    const wallS = r.phase.wallMs / 1000;
    for (const name of r.names) {
      const list = r.phase.samples[name] ?? [];
      const s = summarize(list);
      rows.push([r.operation, name, String(s.count), fmt(s.count / wallS), fmt(s.p50, 2), fmt(s.p99, 2), fmt(s.callsMedian, 0), fmt(s.callsMean, 2), commonBreakdown(list)]);
    }
  }
  out.push(table(['operation', 'op', 'count', 'ops/s', 'p50 ms', 'p99 ms', 'calls p50', 'calls mean', 'most common DynamoDB calls'], rows, 2));
  out.push('');
  const phaseRows = results.map((r) => [
    r.operation, r.how, String(r.phase.accounts), String(r.phase.cycles), fmt(r.phase.wallMs / 1000, 2),
    r.phase.stoppedByTime ? 'time cap' : 'count', errorsText(r.phase.errors),
    r.prepared ? `${r.prepared.made} in ${fmt(r.prepared.wallMs / 1000, 1)} s${r.prepared.errors.size ? `, errors ${errorsText(r.prepared.errors)}` : ''}` : '-',
  ]);
  out.push(table(['operation', 'how', 'accounts', 'cycles', 'wall s', 'stopped by', 'errors', 'prepared (not measured)'], phaseRows, 2));
  out.push('');
  return out.join('\n');
}
