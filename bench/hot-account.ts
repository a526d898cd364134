// The hot shared account: 50 members attached to one main account charge at once, and we
// count the writes that reach the main account's item per 100 member operations. Counted as
// test/store/attached.test.ts counts them: every command but Get/Query/BatchGet whose Key
// (or a transaction item's Key) is the main account's key.
//
// Each member runs rounds of: a session (reserve → update → debit) and BENCH_MEMBER_EVENTS
// event charges. "From cold": the first BENCH_MEMBER_COLD_SESSIONS rounds of fresh members
// (every member must take its first allotment). "Sustained": the next
// BENCH_MEMBER_SUSTAINED_SESSIONS rounds, after the cold ones (allotments have grown).
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Db, Store } from '../functions/store/db.js';
import { createAccount, requireAccount, topUp } from '../functions/store/accounts.js';
import { debitSession, reserve, updateSession } from '../functions/store/sessions.js';
import { directDebit } from '../functions/store/debits.js';
import { key } from '../functions/store/table.js';
import { createProgress } from './progress.js';
import { summarize, type Sample } from './stats.js';
import { TOPUP_MINOR, commonBreakdown, envInt, errorsText, expectStatus, fmt, inBatches, passMiss, table, timed, voice, type TargetRow } from './common.js';

const MEMBERS = envInt('BENCH_MEMBERS', 50);
const COLD_SESSIONS = envInt('BENCH_MEMBER_COLD_SESSIONS', 2);
const SUSTAINED_SESSIONS = envInt('BENCH_MEMBER_SUSTAINED_SESSIONS', 8);
/** Event charges per member per session; BENCH_MEMBER_EVENTS=0 is not a number > 0: use 'none'. */
const EVENTS = process.env.BENCH_MEMBER_EVENTS === 'none' ? 0 : envInt('BENCH_MEMBER_EVENTS', 1);

const TARGETS = { cold: 20, sustained: 5 };

type OpName = 'reserve' | 'update' | 'debit' | 'event';
const NAMES: readonly OpName[] = ['reserve', 'update', 'debit', 'event'];

export interface HotStage {
  stage: 'from cold' | 'sustained';
  sessionsPerMember: number;
  operations: number;
  mainWrites: number;
  wallMs: number;
  samples: Record<OpName, Sample[]>;
  errors: Map<string, number>;
  target: number;
}

export interface HotAccountResult {
  members: number;
  eventsPerSession: number;
  stages: HotStage[];
  /** Money conserved: what left the family is what its members' ledgers charged. */
  family: { mainBalance: number; membersBalance: number; mainAvailable: number };
  /** What the family should have been charged had every operation succeeded. */
  expectedCharged: number;
}

/** Wraps `inner`, counting writes to the item with key `mainKey` (also inside transactions). */
function mainWriteCounter(inner: Db, mainKey: { pk: string; sk: string }) {
  const counter = {
    writes: 0,
    db: {
      send: (command: any) => {
        const input = command.input ?? {};
        const touches = (k: any) => k?.pk === mainKey.pk && k?.sk === mainKey.sk;
        const isWrite = !/^(Get|Query|BatchGet|TransactGet|Scan)Command$/.test(command.constructor.name);
        if (isWrite && (touches(input.Key) || touches(input.Item)
          || (input.TransactItems ?? []).some((t: any) => { const action = Object.values(t)[0] as any; return touches(action?.Key) || touches(action?.Item); }))) {
          counter.writes++;
        }
        return inner.send(command);
      },
    } as Db,
  };
  return counter;
}

export async function runHotAccount(shared: Db, base: Store): Promise<HotAccountResult> {
  const run = randomUUID().slice(0, 6);
  const mainId = `home-${run}`;
  const counter = mainWriteCounter(shared, key.account(mainId));
  const store: Store = { ...base, db: counter.db };
  process.stderr.write(`hot shared account: ${MEMBERS} members of ${mainId}…\n`);
  await createAccount(base, { accountId: mainId, currency: 'EUR', kind: 'prepaid' });
  await topUp(base, mainId, `topup-${mainId}`, TOPUP_MINOR, 'h');
  const members = Array.from({ length: MEMBERS }, (_, i) => `${mainId}-m${i}`);
  await inBatches(members, 8, async (accountId) => { await createAccount(base, { accountId, currency: 'EUR', kind: 'prepaid', mainAccountId: mainId }); });

  const stage = async (name: HotStage['stage'], from: number, count: number, target: number): Promise<HotStage> => {
    const samples = Object.fromEntries(NAMES.map((n) => [n, [] as Sample[]])) as Record<OpName, Sample[]>;
    const errors = new Map<string, number>();
    const perMember = 3 + EVENTS;
    const total = MEMBERS * count * perMember;
    // No time cap: the figure needs every round; BENCH_MEMBER_*_SESSIONS make it shorter.
    const progress = createProgress(`hot ${name}`, total, Math.max(1, total / 40));
    let operations = 0;
    let done = 0;
    const op = async (opName: OpName, run_: (s: Store) => Promise<{ status: number; body: Record<string, unknown> }>, status: number) => {
      try {
        const r = await timed(counter.db, store, run_);
        expectStatus(opName, r.value, status);
        samples[opName].push(r.sample);
        operations++;
        return r.value;
      } catch (error) {
        const code = (error as any)?.code ?? (error as Error)?.name ?? 'Error';
        if (errors.size === 0) process.stderr.write(`\n[hot ${name}] first error: ${(error as Error)?.message ?? String(error)}\n`);
        errors.set(code, (errors.get(code) ?? 0) + 1);
        return null;
      } finally {
        progress.update(++done);
      }
    };
    counter.writes = 0;
    const begin = performance.now();
    await Promise.all(members.map(async (m) => {
      for (let s = from; s < from + count; s++) {
        const rid = `${m}-${s}`;
        const opened = await op('reserve', (st) => reserve(st, { requestId: `${rid}-r`, accountId: m, clientId: 'msc', serviceId: voice.serviceId, requested: { units: 120 } }, 'h'), 201);
        const id = opened?.body.sessionId as string | undefined;
        if (id) {
          await op('update', (st) => updateSession(st, id, { requestId: `${rid}-u`, usedUnits: 120, requested: { units: 120 } }, 'h'), 200);
          await op('debit', (st) => debitSession(st, id, { requestId: `${rid}-d`, usedUnits: 60 }, 'h'), 200);
        }
        for (let e = 0; e < EVENTS; e++) {
          await op('event', (st) => directDebit(st, { requestId: `${rid}-e${e}`, accountId: m, clientId: 'smsc', serviceId: voice.serviceId, units: 30 }, 'h'), 201);
        }
      }
    }));
    const wallMs = performance.now() - begin;
    progress.finish(done);
    return { stage: name, sessionsPerMember: count, operations, mainWrites: counter.writes, wallMs, samples, errors, target };
  };

  const stages = [
    await stage('from cold', 0, COLD_SESSIONS, TARGETS.cold),
    await stage('sustained', COLD_SESSIONS, SUSTAINED_SESSIONS, TARGETS.sustained),
  ];
  const main = await requireAccount(base, mainId);
  let membersBalance = 0;
  for (const m of members) membersBalance += (await requireAccount(base, m)).balance;
  // A session is 120 s + 60 s = 3 started minutes (6); an event of 30 s is 1 (2).
  const expectedCharged = MEMBERS * (COLD_SESSIONS + SUSTAINED_SESSIONS) * (6 + 2 * EVENTS);
  return { members: MEMBERS, eventsPerSession: EVENTS, stages, family: { mainBalance: main.balance, membersBalance, mainAvailable: main.available }, expectedCharged };
}

const perHundred = (s: HotStage) => (s.operations ? (100 * s.mainWrites) / s.operations : NaN);

export function hotAccountReport(r: HotAccountResult): string {
  const out: string[] = [];
  out.push(`Hot shared account: ${r.members} members of one main account charging at once; each member runs sessions (reserve → update → debit)`);
  out.push(`and ${r.eventsPerSession} event charge(s) per session. Main-account item writes counted as test/store/attached.test.ts counts them.`);
  out.push('');
  out.push(table(['stage', 'sessions/member', 'operations', 'main writes', 'per 100 ops', 'target', 'wall s', 'ops/s', 'errors'], r.stages.map((s) => [
    s.stage, String(s.sessionsPerMember), String(s.operations), String(s.mainWrites), fmt(perHundred(s)), `≤ ${s.target}`,
    fmt(s.wallMs / 1000, 2), fmt(s.operations / (s.wallMs / 1000)), errorsText(s.errors),
  ]), 1));
  out.push('');
  const rows: string[][] = [];
  for (const s of r.stages) {
    for (const name of NAMES) {
      const list = s.samples[name];
      if (!list.length) continue;
      const x = summarize(list);
      rows.push([s.stage, name, String(x.count), fmt(x.p50, 2), fmt(x.p99, 2), fmt(x.callsMedian, 0), fmt(x.callsMean, 2), commonBreakdown(list)]);
    }
  }
  out.push(table(['stage', 'op', 'count', 'p50 ms', 'p99 ms', 'calls p50', 'calls mean', 'most common DynamoDB calls'], rows, 2));
  const together = r.family.mainBalance + r.family.membersBalance;
  const clean = r.stages.every((s) => s.errors.size === 0);
  out.push(`family after: main balance ${r.family.mainBalance} (available ${r.family.mainAvailable}) + members' balances ${r.family.membersBalance} = ${together}; `
    + `topped up ${TOPUP_MINOR}, charged ${TOPUP_MINOR - together}${clean ? ` (expected ${r.expectedCharged}: ${TOPUP_MINOR - together === r.expectedCharged ? 'conserved' : 'MISMATCH'})` : ' (errors: no exact expectation)'}`);
  out.push('');
  return out.join('\n');
}

export function hotAccountTargets(r: HotAccountResult): TargetRow[] {
  return r.stages.map((s) => [
    `main-account item writes per 100 member operations, ${s.stage} (target ≤ ${s.target})`,
    fmt(perHundred(s)),
    `${s.mainWrites} writes / ${s.operations} ops, ${r.members} members × ${s.sessionsPerMember} sessions${r.eventsPerSession ? ` + ${r.eventsPerSession} event each` : ''}${s.errors.size ? `; errors ${errorsText(s.errors)}` : ''}`,
    passMiss(s.operations ? perHundred(s) <= s.target : undefined),
  ]);
}
