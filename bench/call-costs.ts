// What one DynamoDB call of each shape costs on the DynamoDB Local this bench runs against,
// at the charging phases' concurrency, next to the raw baseline's conditional UpdateItem:
// the figures that explain the throughput ratio ours/raw (a ratio of the server's cost per
// call shape, more than of our code). Shapes, on items of realistic size in the bench table:
//
//   GetItem (strongly consistent)      a step's read of its session; the sweep's
//   TransactGetItems of 2              a step's read of its session with its answer (a retry)
//   UpdateItem, conditional            the raw baseline; a hot account's two-write step
//   TransactWriteItems of 3 and of 4   a reserve's and an update's or debit's one write
//                                      (an account Update and Puts of 300-byte items)
//
// Each shape runs twice, in forward then reverse order (so the JIT still warming up favours
// none), for BENCH_CALLS_SECONDS (2) or BENCH_CALLS_PER_SHAPE (3000) calls, whichever first.
// A cycle's expected cost follows: reserve + update + debit of ours against three UpdateItems.
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { GetCommand, PutCommand, TransactGetCommand, TransactWriteCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Db } from '../functions/store/db.js';
import { CONCURRENCY, envInt, envNum, fmt, merge, runPhase, table, type PhaseResult } from './common.js';
import { summarize } from './stats.js';

const SECONDS = envNum('BENCH_CALLS_SECONDS', 2);
const PER_SHAPE = envInt('BENCH_CALLS_PER_SHAPE', 3_000);
const ITEMS = 64;

type Shape = 'GetItem' | 'TransactGet of 2' | 'UpdateItem' | 'TransactWrite of 3' | 'TransactWrite of 4';
const shapes: Shape[] = ['GetItem', 'TransactGet of 2', 'UpdateItem', 'TransactWrite of 3', 'TransactWrite of 4'];

export interface CallCostResult {
  concurrency: number;
  /** Per shape: wall ms per call at the concurrency (wall time of the phase / calls), and p50 latency. */
  rows: { shape: Shape; calls: number; wallMsPerCall: number; p50: number }[];
}

export async function runCallCosts(shared: Db, tableName: string): Promise<CallCostResult> {
  const run = randomUUID().slice(0, 6);
  const pk = (i: number) => `CALLCOST#${run}#${i % ITEMS}`;
  // Items of the size of an account (about 0.4 KB) and of a session (about 0.9 KB).
  for (let i = 0; i < ITEMS; i++) {
    await shared.send(new PutCommand({ TableName: tableName, Item: { pk: pk(i), sk: 'A', balance: 1e12, seq: 0, pad: 'a'.repeat(350) } }));
    await shared.send(new PutCommand({ TableName: tableName, Item: { pk: pk(i), sk: 'S', seq: 0, pad: 's'.repeat(850) } }));
  }
  let serial = 0;
  const accountUpdate = (i: number) => ({
    TableName: tableName, Key: { pk: pk(i), sk: 'A' },
    UpdateExpression: 'SET balance = balance - :a, seq = seq + :one', ConditionExpression: 'balance >= :a',
    ExpressionAttributeValues: { ':a': 1, ':one': 1 },
  });
  const puts = (i: number, n: number) => Array.from({ length: n }, () => ({
    Put: { TableName: tableName, Item: { pk: `${pk(i)}#L`, sk: `${serial++}`, amount: -1, pad: 'l'.repeat(250) } },
  }));
  const call: Record<Shape, (i: number) => Promise<unknown>> = {
    'GetItem': (i) => shared.send(new GetCommand({ TableName: tableName, Key: { pk: pk(i), sk: 'S' }, ConsistentRead: true })),
    'TransactGet of 2': (i) => shared.send(new TransactGetCommand({ TransactItems: [
      { Get: { TableName: tableName, Key: { pk: pk(i), sk: 'S' } } },
      { Get: { TableName: tableName, Key: { pk: pk(i), sk: `ANS#${serial++}` } } },
    ] })),
    'UpdateItem': (i) => shared.send(new UpdateCommand(accountUpdate(i))),
    'TransactWrite of 3': (i) => shared.send(new TransactWriteCommand({ TransactItems: [{ Update: accountUpdate(i) }, ...puts(i, 2)] })),
    'TransactWrite of 4': (i) => shared.send(new TransactWriteCommand({ TransactItems: [{ Update: accountUpdate(i) }, ...puts(i, 3)] })),
  };
  const phase = (shape: Shape, half: string) => runPhase<Shape>({
    label: `calls: ${shape} ${half}`, concurrency: CONCURRENCY, accounts: ITEMS, cycles: Math.ceil(PER_SHAPE / 2), seconds: SECONDS / 2, names: [shape],
    cycle: async (worker, index, record) => {
      const t0 = performance.now();
      await call[shape](worker * 7919 + index);
      record(shape, { ms: performance.now() - t0, calls: 1, byCommand: {} });
    },
  });
  const first = new Map<Shape, PhaseResult<Shape>>();
  for (const shape of shapes) first.set(shape, await phase(shape, '1/2'));
  const rows: CallCostResult['rows'] = [];
  for (const shape of [...shapes].reverse()) {
    const both = merge(first.get(shape)!, await phase(shape, '2/2'));
    const s = summarize(both.samples[shape]);
    rows.push({ shape, calls: s.count, wallMsPerCall: both.wallMs / Math.max(1, s.count), p50: s.p50 });
  }
  rows.sort((a, b) => shapes.indexOf(a.shape) - shapes.indexOf(b.shape));
  return { concurrency: CONCURRENCY, rows };
}

export function callCostsReport(result: CallCostResult): string {
  const update = result.rows.find((r) => r.shape === 'UpdateItem')!.wallMsPerCall;
  const cost = (shape: Shape) => result.rows.find((r) => r.shape === shape)!.wallMsPerCall;
  const out = [
    `DynamoDB Local's cost per call shape at c=${result.concurrency} (wall ms per call = phase wall time / calls; x UpdateItem = that over the baseline's call)`,
    table(['shape', 'calls', 'wall ms per call', 'x UpdateItem', 'p50 ms'], result.rows.map((r) => [
      r.shape, String(r.calls), fmt(r.wallMsPerCall, 3), `${fmt(r.wallMsPerCall / update, 2)}x`, fmt(r.p50, 2),
    ])),
  ];
  // A quiet account's cycle: reserve = one write of 3 items; update and debit = a read of
  // the session, then one write of 4. The raw cycle: three UpdateItems.
  const ours = cost('TransactWrite of 3') + 2 * (cost('GetItem') + cost('TransactWrite of 4'));
  out.push(`expected ratio for a quiet account's reserve → update → debit from these shapes alone: 3 x UpdateItem / (TransactWrite of 3 + 2 x (GetItem + TransactWrite of 4)) = ${fmt((3 * update) / ours, 2)}`);
  out.push('');
  return out.join('\n');
}
