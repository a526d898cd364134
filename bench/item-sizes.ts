// Item sizes, capacity units and cost per operation of the charging path, measured on
// DynamoDB Local: the figures behind the cost model in docs/deploy.md.
//
//   npx tsx bench/item-sizes.ts
//
// Drives the real Lambda handlers (reserve, update, debit) with API Gateway payload 2.0
// events, as events.test.ts does, through a recording store that asks DynamoDB for
// `ReturnConsumedCapacity: INDEXES` on every call. Per cycle: reserve -> 4 updates -> debit
// (the "typical session" of the cost model). After each step it reads the raw items and
// sizes them by the DynamoDB item-size rules.
//
// What is measured and what is not:
// - Capacity units are what DynamoDB Local reports (it applies the service's rounding:
//   1 WRU per started KB, x2 in a transaction, 1 RRU per started 4 KB strongly consistent,
//   index writes on the 'due' GSI). Item sizes are computed here from the raw items.
// - Handler duration is wall time in this process against DynamoDB Local on localhost: a
//   proxy, not Lambda's billed duration (real DynamoDB is a network hop away; Lambda's CPU
//   at 512 MB is a fraction of a core). The cost model assumes 20 ms and shows both.
// Progress goes to stderr; the tables go to stdout.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DeleteItemCommand, DynamoDBClient, GetItemCommand, PutItemCommand, QueryCommand, type AttributeValue } from '@aws-sdk/client-dynamodb';
import type { APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { startDynamoDbLocal } from '../infra/local/dynamodb.js';
import { repoRoot } from '../infra/bundling.js';

const CYCLES = Math.max(1, Math.floor(Number(process.env.BENCH_COST_CYCLES) || 20));
const UPDATES = 4;

// ------------------------------------------------------------------------------- prices
/** us-east-1 list prices as published in 2025 (on-demand DynamoDB after the November 2024 cut). */
const prices = {
  lambdaGbSecondArm: 0.0000133334,
  lambdaPerMillionRequests: 0.2,
  httpApiPerMillionRequests: 1.0,
  dynamoPerMillionWru: 0.625,
  dynamoPerMillionRru: 0.125,
  logsPerGbIngested: 0.5,
};
const MEMORY_GB = 512 / 1024;
const ASSUMED_LAMBDA_MS = 20;
/** START + END + REPORT lines Lambda writes per invocation (estimate; the handlers log nothing on success). */
const LOG_BYTES_PER_INVOCATION = 300;
const TOTOGI_PER_MILLION = 50;
const TARGET_PER_MILLION = 3;

// ------------------------------------------------------------------------- item sizes

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

/** A number: 1 byte per two significant digits, plus 1 (leading and trailing zeros trimmed). */
function numberSize(text: string): number {
  const digits = text.replace(/^-/, '').replace(/[eE].*$/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '');
  return Math.ceil(Math.max(1, digits.length) / 2) + 1;
}

/**
 * The DynamoDB size of a value: strings and binaries by length, numbers as above, booleans
 * and null 1 byte, lists and maps 3 bytes plus their elements (map keys count as names)
 * plus 1 byte per element, as the published item-size calculators count them.
 */
function valueSize(value: AttributeValue): number {
  if (value.S !== undefined) return utf8(value.S);
  if (value.N !== undefined) return numberSize(value.N);
  if (value.B !== undefined) return value.B.byteLength;
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.SS) return value.SS.reduce((sum, s) => sum + utf8(s), 0);
  if (value.NS) return value.NS.reduce((sum, n) => sum + numberSize(n), 0);
  if (value.BS) return value.BS.reduce((sum, b) => sum + b.byteLength, 0);
  if (value.M) return 3 + Object.entries(value.M).reduce((sum, [name, v]) => sum + utf8(name) + valueSize(v) + 1, 0);
  if (value.L) return 3 + value.L.reduce((sum, v) => sum + valueSize(v) + 1, 0);
  return 0;
}

/** An item: the names of its attributes plus their values. */
function itemSize(item: Record<string, AttributeValue>): number {
  return Object.entries(item).reduce((sum, [name, value]) => sum + utf8(name) + valueSize(value), 0);
}

// ------------------------------------------------------------------------------ events

const context = {
  functionName: 'bench', functionVersion: '$LATEST', invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:bench',
  memoryLimitInMB: '512', awsRequestId: 'bench', logGroupName: 'bench', logStreamName: 'bench', callbackWaitsForEmptyEventLoop: true,
  getRemainingTimeInMillis: () => 10_000, done: () => undefined, fail: () => undefined, succeed: () => undefined,
} as Context;

/** An event of events/ with another path and body. */
function event(file: string, params: Record<string, string>, body: unknown) {
  const template = JSON.parse(readFileSync(join(repoRoot, 'events', `${file}.json`), 'utf8'));
  const path = String(template.routeKey.split(' ')[1]).replace(/\{(\w+)\}/g, (_: string, name: string) => params[name] ?? `{${name}}`);
  return {
    ...template,
    rawPath: path,
    pathParameters: Object.keys(params).length ? params : undefined,
    requestContext: { ...template.requestContext, http: { ...template.requestContext.http, path } },
    body: JSON.stringify(body),
  };
}

// ------------------------------------------------------------------------------- report

const pad = (s: string, width: number) => (s.length >= width ? s : ' '.repeat(width - s.length) + s);
const padEnd = (s: string, width: number) => (s.length >= width ? s : s + ' '.repeat(width - s.length));
function table(headers: string[], rows: string[][], leftColumns = 1): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < leftColumns ? padEnd(c, widths[i]!) : pad(c, widths[i]!))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
const usd = (n: number) => `$${n.toFixed(3)}`;
const units = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));

// --------------------------------------------------------------------------------- main

type Op = 'reserve' | 'update' | 'debit';
type Item = Record<string, AttributeValue>;
/** One item a call touched: "Get SES", "Update ACC", "Put LEDGER" (inside a transaction: transact). */
interface Touch { kind: string; prefix: string; sk?: string; consistent?: boolean; transact: boolean; item?: Item }
/** One DynamoDB call of an operation, with what DynamoDB Local reported for it. */
interface Call { command: string; touches: Touch[]; localRead: number; localWrite: number; localIndex: number }
interface Units { rru: number; wru: number; indexWrites: number }
interface Sample { op: Op; ms: number; calls: Call[]; rules: Units; local: Units }
interface Snapshot { account?: Item; session?: Item; ledger: Map<string, number> }

const KB = 1024;
const prefixOf = (pk: unknown) => String(pk ?? '').split('#')[0]!;

/**
 * Capacity units of one step by the documented rules, from the items before and after it:
 * GetItem 1 RRU per started 4 KB (half when eventually consistent); a write 1 WRU per
 * started KB of the larger of the item before and after; x2 for every item of a
 * transaction; the 'due' index (KEYS_ONLY, entries < 1 KB) 1 WRU per index write: a new
 * entry 1, a removed one 1, a moved one (dueAt changed) 2 (delete + put).
 */
function unitsByRules(calls: Call[], before: Snapshot, after: Snapshot): Units {
  let rru = 0;
  let wru = 0;
  const size = (item: Item | undefined) => (item ? itemSize(item) : 0);
  for (const call of calls) {
    for (const touch of call.touches) {
      const factor = touch.transact ? 2 : 1;
      if (touch.kind === 'Query' || touch.kind === 'Scan') { // not on this path; counted as one page under 4 KB
        rru += touch.consistent ? 1 : 0.5;
        continue;
      }
      if (touch.kind === 'Get') {
        const bytes = touch.prefix === 'SES' ? size(before.session) : touch.prefix === 'ACC' ? size(before.account) : size(touch.item);
        // A transactional read costs 2 RRU per started 4 KB; a strongly consistent one 1; else 0.5.
        rru += Math.max(1, Math.ceil(bytes / (4 * KB))) * (touch.transact ? 2 : touch.consistent ? 1 : 0.5);
        continue;
      }
      let bytes: number;
      if (touch.prefix === 'SES') bytes = Math.max(size(before.session), size(after.session));
      else if (touch.prefix === 'ACC') bytes = Math.max(size(before.account), size(after.account));
      else if (touch.prefix === 'LEDGER' && touch.sk && after.ledger.has(touch.sk)) bytes = after.ledger.get(touch.sk)!;
      else bytes = size(touch.item);
      wru += factor * Math.max(1, Math.ceil(bytes / KB));
    }
  }
  const due = (item: Item | undefined) => (item?.dueAt?.S ? `${item.dueShard?.S}/${item.dueAt.S}` : undefined);
  const [was, now] = [due(before.session), due(after.session)];
  const indexWrites = !was && !now ? 0 : !was || !now ? 1 : was === now ? 0 : 2;
  return { rru, wru, indexWrites };
}

async function main() {
  const dynamodb = await startDynamoDbLocal();
  try {
    const tableName = 'charging-cost';
    Object.assign(process.env, {
      TABLE_NAME: tableName, AWS_ENDPOINT_URL_DYNAMODB: dynamodb.endpoint, AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local', AWS_SECRET_ACCESS_KEY: 'local', POWERTOOLS_LOG_LEVEL: 'WARN',
    });
    delete process.env.CHARGING_API_TOKEN; // IAM guards the API in AWS
    delete process.env.EVENT_BUS_NAME;
    const { ensureTable } = await import('../functions/store/db.js');
    const { key } = await import('../functions/store/table.js');
    const { marshall } = await import('@aws-sdk/util-dynamodb');
    const config = await import('../functions/config.js');
    const own = config.store();
    await ensureTable(own);

    // Every call asks for its consumed capacity; the calls of the running operation are kept.
    let calls: Call[] | undefined;
    config.useStore({
      ...own,
      db: {
        send: async (command: any) => {
          const name = String(command.constructor.name).replace(/Command$/, '');
          if (command.input && !/^(CreateTable|DescribeTable|UpdateTimeToLive)$/.test(name)) command.input.ReturnConsumedCapacity = 'INDEXES';
          const result = await own.db.send(command);
          const consumed = [result?.ConsumedCapacity ?? []].flat() as Array<{ Table?: { CapacityUnits?: number }; GlobalSecondaryIndexes?: Record<string, { CapacityUnits?: number }> }>;
          const table = consumed.reduce((sum, c) => sum + (c.Table?.CapacityUnits ?? 0), 0);
          const index = consumed.reduce((sum, c) => sum + Object.values(c.GlobalSecondaryIndexes ?? {}).reduce((t, i) => t + (i.CapacityUnits ?? 0), 0), 0);
          const isRead = /^(Get|Query|Scan|BatchGet|TransactGet)$/.test(name);
          const touch = (kind: string, body: any, transact: boolean): Touch => {
            const sk = body.Key?.sk ?? body.Item?.sk;
            // A session's answer items share its partition: ANS, apart from the session item (SES).
            const prefix = typeof sk === 'string' && sk.startsWith('ANS#') ? 'ANS' : prefixOf(body.Key?.pk ?? body.Item?.pk);
            return { kind, transact, prefix, sk, consistent: body.ConsistentRead === true, item: body.Item ? marshall(body.Item, { removeUndefinedValues: true }) : undefined };
          };
          const batchGet = name === 'BatchGet' ? Object.values(command.input.RequestItems ?? {})[0] as { Keys: any[]; ConsistentRead?: boolean } : undefined;
          const touches = name === 'TransactWrite' || name === 'TransactGet'
            ? (command.input.TransactItems ?? []).map((item: Record<string, any>) => { const [kind, body] = Object.entries(item)[0]!; return touch(kind, body, true); })
            : batchGet ? batchGet.Keys.map((k) => touch('Get', { Key: k, ConsistentRead: batchGet.ConsistentRead }, false))
              : [touch(name, command.input ?? {}, false)];
          // A transaction is named by its items: "TransactWrite[Update SES, Put LEDGER]"; a batch by its keys.
          const label = name === 'TransactWrite' || name === 'TransactGet' ? `${name}[${touches.map((t: Touch) => `${t.kind} ${t.prefix}`).join(', ')}]`
            : batchGet ? `BatchGet[${touches.map((t: Touch) => t.prefix).join(', ')}]` : `${name} ${touches[0]!.prefix}`;
          calls?.push({ command: label, touches, localRead: isRead ? table : 0, localWrite: isRead ? 0 : table, localIndex: index });
          return result;
        },
      },
    });
    const handler = async (name: string) => (await import(`../functions/handlers/${name}.ts`)).handler as (e: unknown, c: Context) => Promise<APIGatewayProxyStructuredResultV2>;
    const services = await handler('services');
    const accounts = await handler('accounts');
    const handlers: Record<Op, Awaited<ReturnType<typeof handler>>> = { reserve: await handler('reserve'), update: await handler('update'), debit: await handler('debit') };

    const raw = new DynamoDBClient({ endpoint: dynamodb.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
    const marshalled = (k: { pk: string; sk: string }) => ({ pk: { S: k.pk }, sk: { S: k.sk } });
    const getRaw = async (k: { pk: string; sk: string }) =>
      (await raw.send(new GetItemCommand({ TableName: tableName, Key: marshalled(k), ConsistentRead: true }))).Item;
    const snapshot = async (accountId: string, sessionId: string): Promise<Snapshot> => {
      const { Items = [] } = await raw.send(new QueryCommand({
        TableName: tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': { S: `LEDGER#${accountId}` } }, ConsistentRead: true,
      }));
      return {
        account: await getRaw(key.account(accountId)),
        session: sessionId ? await getRaw(key.session(sessionId)) : undefined,
        ledger: new Map(Items.map((item) => [item.sk!.S!, itemSize(item)])),
      };
    };
    /** The started KB DynamoDB Local bills for a Put of an item (a same-size copy under another key): a cross-check of itemSize. */
    const localKb = async (item: Item | undefined) => {
      if (!item) return 0;
      const copy = { ...item, pk: { S: `Z${item.pk!.S!.slice(1)}` } };
      const put = await raw.send(new PutItemCommand({ TableName: tableName, Item: copy, ReturnConsumedCapacity: 'INDEXES' }));
      await raw.send(new DeleteItemCommand({ TableName: tableName, Key: { pk: copy.pk, sk: item.sk! } }));
      return put.ConsumedCapacity?.Table?.CapacityUnits ?? 0; // the table's share: the index write is not the item's size
    };

    const call = async (fn: Awaited<ReturnType<typeof handler>>, e: unknown, expect: number) => {
      const answer = await fn(e, context);
      if (answer.statusCode !== expect) throw new Error(`expected ${expect}, got ${answer.statusCode}: ${answer.body}`);
      return JSON.parse(answer.body ?? 'null');
    };

    // Realistic identifier lengths: an MSISDN-like account, an IMS node as client, and
    // Diameter-like request ids (Session-Id:CC-Request-Number).
    await call(services, event('put-service', { serviceId: 'voice' }, { unit: 'seconds', price: { amount: 2, per: 60 }, validitySeconds: 300, interimIntervalSeconds: 30 }), 200);
    const clientId = 'scscf-1.ims.example.net';
    const samples: Sample[] = [];
    const sizes: string[][] = [];
    for (let cycle = 0; cycle <= CYCLES; cycle++) { // cycle 0 warms up (JIT, service cache) and is not counted
      process.stderr.write(`\rcycle ${cycle}/${CYCLES}   `);
      const accountId = `msisdn-49151${String(1_000_000 + cycle).padStart(7, '0')}`;
      await call(accounts, event('create-account', {}, { accountId, currency: 'EUR', kind: 'prepaid' }), 201);
      await call(accounts, event('topup', { accountId }, { requestId: `topup-${accountId}`, amount: 100_000 }), 200);
      const diameterSession = `${clientId}:1767261960:${cycle}`;
      const steps: Array<{ op: Op; label: string; params: (sessionId: string) => Record<string, string>; body: unknown; status: number }> = [
        { op: 'reserve', label: 'reserve', params: () => ({}), body: { requestId: `${diameterSession}:0`, accountId, clientId, serviceId: 'voice', requested: { units: 600 } }, status: 201 },
        ...Array.from({ length: UPDATES }, (_, i) => ({
          op: 'update' as const, label: `update ${i + 1}`, params: (sessionId: string) => ({ sessionId }),
          body: { requestId: `${diameterSession}:${i + 1}`, used: { units: 90 }, requested: { units: 600 } }, status: 200,
        })),
        { op: 'debit', label: 'debit', params: (sessionId: string) => ({ sessionId }), body: { requestId: `${diameterSession}:${UPDATES + 1}`, used: { units: 30 } }, status: 200 },
      ];
      let sessionId = '';
      for (const step of steps) {
        const before = await snapshot(accountId, sessionId);
        calls = [];
        const t0 = performance.now();
        const answer = await call(handlers[step.op], event(step.op, step.params(sessionId), step.body), step.status);
        const ms = performance.now() - t0;
        const stepCalls = calls;
        calls = undefined;
        if (step.op === 'reserve') sessionId = answer.sessionId;
        const after = await snapshot(accountId, sessionId);
        const rules = unitsByRules(stepCalls, before, after);
        const total = (f: (c: Call) => number) => stepCalls.reduce((t, c) => t + f(c), 0);
        const local = { rru: total((c) => c.localRead), wru: total((c) => c.localWrite), indexWrites: total((c) => c.localIndex) };
        if (cycle > 0) samples.push({ op: step.op, ms, calls: stepCalls, rules, local });
        if (cycle === 1) {
          const newEntries = [...after.ledger].filter(([sk]) => !before.ledger.has(sk)).map(([, bytes]) => bytes);
          sizes.push([
            step.label, String(itemSize(after.account!)), String(itemSize(after.session!)), `${await localKb(after.account)} / ${await localKb(after.session)}`,
            newEntries.join(' + ') || '-', String(rules.rru), String(rules.wru), String(rules.indexWrites), `${local.rru} / ${local.wru} / ${local.indexWrites}`,
          ]);
        }
      }
    }
    process.stderr.write('\n\n');

    // ------------------------------------------------------------------ item sizes
    console.log(`One session, step by step (identifiers of production length: ${clientId}, msisdn-4915..., Diameter-like requestIds):\n`);
    console.log(table(['after', 'account B', 'session B', 'Local KB (acc/ses)', 'new ledger entries B', 'RRU', 'WRU', 'index writes', 'Local RRU/WRU/index'], sizes));
    console.log(`
B = item size computed by the DynamoDB item-size rules (attribute names + values; numbers 1 B per 2 digits + 1;
maps and lists 3 B + 1 B per element). Local KB = the KB DynamoDB Local bills for a Put of the same item (cross-check).
RRU/WRU/index writes = by the documented rules from those sizes (1 WRU per started KB of the larger of before/after,
x2 for each item of a transaction, 1 RRU per started 4 KB strongly consistent, 1 WRU per 'due' index write).
DynamoDB Local's own report is shown last: it bills a transaction by its summed size, not per item (two 0.3 KB
ledger Puts cost it 2 WRU, not 4), and doubles index writes made in a transaction; the rules are used below.
Each request's answer (for replays) is an item of its own (ANS, in the session's partition): the session item keeps its size.`);

    // ------------------------------------------------------------- units per operation
    const ops: Op[] = ['reserve', 'update', 'debit'];
    const perOp = Object.fromEntries(ops.map((op) => {
      const mine = samples.filter((s) => s.op === op);
      // The mean, not the median: updates cost more as the session item grows, and the cost of a session is their sum.
      const avg = (f: (s: Sample) => number) => mean(mine.map(f));
      const mix = new Map<string, number>();
      for (const c of mine[0]!.calls) mix.set(c.command, (mix.get(c.command) ?? 0) + 1);
      return [op, {
        count: mine.length,
        calls: [...mix].map(([c, n]) => (n > 1 ? `${c} x${n}` : c)).join(' + '),
        rru: avg((s) => s.rules.rru), wru: avg((s) => s.rules.wru), gsi: avg((s) => s.rules.indexWrites),
        ms: median(mine.map((s) => s.ms)),
      }];
    })) as Record<Op, { count: number; calls: string; rru: number; wru: number; gsi: number; ms: number }>;
    console.log(`\nPer operation (mean over ${CYCLES} sessions of 1 reserve + ${UPDATES} updates + 1 debit; handler ms = median wall time in this process against DynamoDB Local):\n`);
    console.log(table(['operation', 'DynamoDB calls', 'RRU', 'WRU', 'index WRU', 'handler ms'],
      ops.map((op) => { const o = perOp[op]; return [op, o.calls, units(o.rru), units(o.wru), units(o.gsi), o.ms.toFixed(1)]; }), 2));

    // ----------------------------------------------------------------- cost model
    const lambdaCompute = (ms: number) => (Math.ceil(ms) / 1000) * MEMORY_GB * prices.lambdaGbSecondArm * 1e6;
    const logs = (LOG_BYTES_PER_INVOCATION / 1024 ** 3) * prices.logsPerGbIngested * 1e6;
    const costOf = (o: { rru: number; wru: number; gsi: number }, ms: number, indexFactor = 1) => {
      const parts = {
        api: prices.httpApiPerMillionRequests,
        lambdaRequests: prices.lambdaPerMillionRequests,
        lambdaCompute: lambdaCompute(ms),
        dynamoWrites: (o.wru + indexFactor * o.gsi) * prices.dynamoPerMillionWru,
        dynamoReads: o.rru * prices.dynamoPerMillionRru,
        logs,
      };
      return { ...parts, total: Object.values(parts).reduce((a, b) => a + b, 0) };
    };
    const mix: Array<[Op, number]> = [['reserve', 1], ['update', UPDATES], ['debit', 1]];
    const perSessionOps = mix.reduce((n, [, k]) => n + k, 0);
    const typical = (ms: (op: Op) => number, indexFactor = 1) => {
      const costs = mix.map(([op, k]) => ({ k, c: costOf(perOp[op], ms(op), indexFactor) }));
      const avg = (f: (c: ReturnType<typeof costOf>) => number) => costs.reduce((t, { k, c }) => t + k * f(c), 0) / perSessionOps;
      return { api: avg((c) => c.api), lambdaRequests: avg((c) => c.lambdaRequests), lambdaCompute: avg((c) => c.lambdaCompute), dynamoWrites: avg((c) => c.dynamoWrites), dynamoReads: avg((c) => c.dynamoReads), logs: avg((c) => c.logs), total: avg((c) => c.total) };
    };
    const rows = (ms: (op: Op) => number) => [
      ...ops.map((op) => ({ label: op, c: costOf(perOp[op], ms(op)) })),
      { label: `typical mix (1 reserve + ${UPDATES} updates + 1 debit)`, c: typical(ms) },
    ].map(({ label, c }) => [label, usd(c.api), usd(c.lambdaRequests), usd(c.lambdaCompute), usd(c.dynamoWrites), usd(c.dynamoReads), usd(c.logs), usd(c.total),
      `${(TOTOGI_PER_MILLION / c.total).toFixed(0)}x less`, c.total <= TARGET_PER_MILLION ? 'PASS' : 'MISS']);
    const headers = ['per million operations', 'HTTP API', 'Lambda req', 'Lambda GB-s', 'DynamoDB write', 'DynamoDB read', 'Logs', 'total', `vs $${TOTOGI_PER_MILLION}`, `<= $${TARGET_PER_MILLION}`];
    console.log(`\nCost per million operations, us-east-1 list prices as published in 2025 (arm64 Lambda $${prices.lambdaGbSecondArm}/GB-s + $${prices.lambdaPerMillionRequests}/M requests,`
      + ` HTTP API $${prices.httpApiPerMillionRequests}/M, DynamoDB on-demand $${prices.dynamoPerMillionWru}/M WRU and $${prices.dynamoPerMillionRru}/M RRU, CloudWatch Logs $${prices.logsPerGbIngested}/GB, ~${LOG_BYTES_PER_INVOCATION} B of Lambda log lines per invocation).`);
    console.log(`\nLambda at an assumed ${ASSUMED_LAMBDA_MS} ms, 512 MB arm64:\n`);
    console.log(table(headers, rows(() => ASSUMED_LAMBDA_MS)));
    console.log(`\nLambda at the handler time measured here (DynamoDB Local on localhost; a proxy only):\n`);
    console.log(table(headers, rows((op) => perOp[op].ms)));
    const t = typical(() => ASSUMED_LAMBDA_MS).total;
    const doubled = typical(() => ASSUMED_LAMBDA_MS, 2).total;
    console.log(`\nIf index writes made in a transaction cost double (as DynamoDB Local counts them), the typical mix is ${usd(doubled)} instead of ${usd(typical(() => ASSUMED_LAMBDA_MS).total)}.`);
    console.log(`\nA typical session (${perSessionOps} operations) costs ${usd(t * perSessionOps / 1000)} per thousand sessions, ${usd(t * perSessionOps)} per million sessions.`);
  } finally {
    await dynamodb.stop();
  }
}

await main();
