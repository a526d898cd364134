// Where the simulated requests run.
//
// - 'lambda' (default): a pool of worker threads, each a Lambda container: its own module
//   state (service cache, compaction queue), one request at a time, started on demand (a
//   cold start) when every container is busy. This is how the handlers run in AWS.
// - 'process': every request in this process, concurrently, as the local server (`npm start`)
//   runs them: module state is shared between concurrent requests.
//
// Either way each request runs through `dispatch` (the API Gateway 2.0 event fed to the real
// handler) with a store whose db injects the faults planned for that very attempt.
import { Worker } from 'node:worker_threads';
import { Agent, request } from 'node:http';
import { randomUUID } from 'node:crypto';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import { createStore, documentClient, type Db, type Store } from '../../functions/store/db.js';
import { useStore } from '../../functions/config.js';
import { dispatch, loadHandler } from '../../infra/local/api-gateway.js';
import type { ScheduledHandlerName } from '../../functions/http/routes.js';
import { logger } from '../../functions/http/handler.js';
import { FaultyDb, attemptStore, newAttempt, type FaultPlan } from './faults.js';

export interface HttpReply {
  status: number;
  contentType: string;
  text: string;
  injected: string[];
  errors: string[];
  /** The handler threw past its error middleware (never expected). */
  thrown?: string;
}

export interface SweepReply {
  summary?: Record<string, number>;
  error?: string;
  injected: string[];
}

export interface RuntimeStats {
  calls: Record<string, number>;
  injected: Record<string, number>;
  containers: number;
}

export interface Runtime {
  http(method: string, path: string, headers: Record<string, string>, body: string, plan: FaultPlan | null, label: string): Promise<HttpReply>;
  sweep(plan: FaultPlan | null): Promise<SweepReply>;
  /** One run of the recharge trigger (threshold and scheduled recharges), then of the notification relay. */
  trigger(plan: FaultPlan | null): Promise<SweepReply>;
  /** Resolves when no db call is in flight anywhere (orphaned work included). */
  idle(): Promise<void>;
  stats(): Promise<RuntimeStats>;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  endpoint: string;
  tableName: string;
  /** Shared clock: one BigInt64 slot of epoch milliseconds. */
  clock: SharedArrayBuffer;
  /** Every read of the clock moves it 1 ms (no two reads share a millisecond). */
  realisticClock: boolean;
  serviceCacheMs: number;
  /**
   * How the handlers' db calls reach DynamoDB Local: 'sdk' = the document client of
   * functions/store/db.ts, exactly as deployed; 'direct' = the same commands, marshalled by
   * the same rules, posted as DynamoDB JSON over a keep-alive socket (see DirectDb).
   */
  client?: DbClient;
  /**
   * Sessions always write the account first and the record after (functions/store/ops.ts):
   * what a hot account's writes do. Every third Lambda container runs so, so the two-write
   * path and what dying between its writes leaves are exercised beside the one write.
   */
  twoWriteSteps?: boolean;
}

export type DbClient = 'sdk' | 'direct';

const add = (into: Record<string, number>, from: Map<string, number> | Record<string, number>) => {
  for (const [k, v] of from instanceof Map ? from : Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};

// ---------------------------------------------------------------------- direct client

/** lib-dynamodb's key nodes: which parts of a command's input or output are items. */
type KeyNodes = Record<string, any> | null;

/**
 * The document client's marshalling walk (lib-dynamodb processObj/processKeysInObj), over
 * the key nodes each command declares: `null` = this value, `{}` = every value of this
 * object, `{ '*': n }` = every entry, at the next level, by `n`.
 */
function walk(value: any, convert: (x: any) => any, nodes: KeyNodes): any {
  if (value === undefined) return undefined;
  if (nodes === null) return convert(value);
  const keys = Object.keys(nodes);
  if (keys.length === 0) {
    if (Array.isArray(value)) return value.map((v) => walk(v, convert, null));
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const converted = walk(v, convert, null);
      if (converted !== undefined) out[k] = converted;
    }
    return out;
  }
  if (keys.length === 1 && keys[0] === '*') {
    const out: any = Array.isArray(value) ? [] : {};
    for (const [k, v] of Object.entries(value ?? {})) out[k] = walk(v, convert, nodes['*']);
    return out;
  }
  const out: any = Array.isArray(value) ? [...value] : { ...value };
  for (const [k, n] of Object.entries(nodes)) {
    const converted = walk(value[k], convert, n);
    if (converted !== undefined) out[k] = converted;
  }
  return out;
}

// The SDK's standard retry (3 attempts) retries these; so does the direct client.
const THROTTLING = new Set(['ProvisionedThroughputExceededException', 'RequestLimitExceeded', 'ThrottlingException', 'TransactionInProgressException', 'LimitExceededException']);
const NETWORK = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT']);
const retryable = (error: any) => THROTTLING.has(error?.name) || NETWORK.has(error?.code) || (error?.$metadata?.httpStatusCode ?? 0) >= 500;

/**
 * The handlers' Db without the SDK's middleware stack: the same lib-dynamodb commands,
 * marshalled with the same options (removeUndefinedValues, as functions/store/db.ts sets)
 * along the same key nodes, sent as the DynamoDB JSON protocol, answered the same way:
 * plain items out, and errors named like the SDK's with their modelled fields (`Item` of
 * a failed condition, `CancellationReasons` of a cancelled transaction) as raw attribute
 * values, as the SDK leaves them. What it leaves out is request signing, endpoint
 * resolution and schema-driven serde, which DynamoDB Local does not need and which cost
 * three quarters of the simulator's client CPU (about 0.6 ms of 0.8 ms per call on a
 * 2-core machine where DynamoDB Local needs the other core). `client: 'sdk'` runs the real
 * document client instead.
 */
export class DirectDb implements Db {
  private readonly url: URL;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });
  private readonly fallback: Db;

  constructor(endpoint: string) {
    this.url = new URL(endpoint);
    this.fallback = documentClient({ endpoint });
  }

  async send(command: any): Promise<any> {
    const inner = command?.clientCommand;
    // Not a document-client command (table administration): the SDK does it.
    if (!inner || !command.inputKeyNodes) return this.fallback.send(command);
    const operation = String(inner.constructor.name).replace(/Command$/, '');
    const input = walk(command.input, (x) => marshall(x, { removeUndefinedValues: true, convertTopLevelContainer: true }), command.inputKeyNodes);
    // The SDK fills the idempotency token of a transaction (kept across its own retries).
    if (operation === 'TransactWriteItems' && input.ClientRequestToken === undefined) input.ClientRequestToken = randomUUID();
    const body = JSON.stringify(input);
    for (let attempt = 1; ; attempt++) {
      try {
        const output = await this.post(operation, body);
        return walk(output, (x) => unmarshall(x, { convertWithoutMapWrapper: true }), command.outputKeyNodes);
      } catch (error) {
        if (attempt >= 3 || !retryable(error)) throw error;
        await new Promise((r) => setTimeout(r, Math.random() * 100 * 2 ** (attempt - 1)));
      }
    }
  }

  private post(operation: string, body: string): Promise<any> {
    return new Promise((resolve, reject) => {
      const req = request({
        host: this.url.hostname, port: this.url.port, method: 'POST', path: '/', agent: this.agent,
        headers: {
          'content-type': 'application/x-amz-json-1.0',
          'x-amz-target': `DynamoDB_20120810.${operation}`,
          // DynamoDB Local reads the access key from here (and checks no signature).
          authorization: 'AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0',
          'content-length': Buffer.byteLength(body),
        },
      }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, any> = {};
          try { json = text ? JSON.parse(text) : {}; } catch { /* an HTML error page: named by its status below */ }
          const status = res.statusCode ?? 0;
          if (status === 200) return resolve(json);
          const { __type, message, Message, ...fields } = json;
          const name = String(__type ?? `Http${status}`).split('#').pop()!;
          reject(Object.assign(new Error(String(message ?? Message ?? name)), { name, ...fields, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status } }));
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  }
}

/** The store a container (or this process) gives the handlers. */
export function simulatedStore(options: RuntimeOptions): { store: Store; db: FaultyDb } {
  const clock = new BigInt64Array(options.clock);
  const db = new FaultyDb(options.client === 'direct' ? new DirectDb(options.endpoint) : documentClient({ endpoint: options.endpoint }));
  const now = options.realisticClock ? () => new Date(Number(Atomics.add(clock, 0, 1n) + 1n)) : () => new Date(Number(Atomics.load(clock, 0)));
  const store = createStore({ tableName: options.tableName, endpoint: options.endpoint, now, serviceCacheMs: options.serviceCacheMs, db, twoWriteSteps: options.twoWriteSteps });
  return { store, db };
}

/** Keeps the handlers' logs out of the output; unhandled errors go to the attempt instead. */
export function quietLogs(): () => void {
  const originalError = logger.error.bind(logger);
  const originalLevel = logger.getLevelName();
  logger.setLogLevel('SILENT');
  (logger as any).error = (message: unknown, ...rest: unknown[]) => {
    const ctx = attemptStore.getStore();
    const detail = rest.map((r: any) => (r?.error ? `${r.error.name}: ${r.error.message}` : '')).join(' ');
    if (ctx) ctx.errors.push(`${String(message)} ${detail}`.trim());
  };
  // Handlers that log with console.error (a best-effort write that failed) report to the
  // attempt too; outside an attempt it prints as usual.
  const originalConsoleError = console.error;
  console.error = (...args: unknown[]) => {
    const ctx = attemptStore.getStore();
    if (ctx) ctx.errors.push(args.map(String).join(' ').slice(0, 300));
    else originalConsoleError(...args);
  };
  return () => {
    (logger as any).error = originalError;
    logger.setLogLevel(originalLevel);
    console.error = originalConsoleError;
  };
}

/** Runs one request in this process, under its fault plan. */
export async function runHttp(store: Store, method: string, path: string, headers: Record<string, string>, body: string, plan: FaultPlan | null, label: string): Promise<HttpReply> {
  useStore(store);
  const ctx = newAttempt(label, plan);
  try {
    const result = await attemptStore.run(ctx, () => dispatch(method, new URL(`http://sim.local${path}`), headers, body));
    return {
      status: result.statusCode ?? 200,
      contentType: String((result.headers as Record<string, unknown> | undefined)?.['content-type'] ?? ''),
      text: result.body ?? '',
      injected: ctx.injected,
      errors: ctx.errors,
    };
  } catch (error) {
    return { status: 599, contentType: '', text: '', injected: ctx.injected, errors: ctx.errors, thrown: String((error as Error)?.stack ?? error) };
  }
}

export async function runSweep(store: Store, plan: FaultPlan | null, name: ScheduledHandlerName = 'interim-sweep'): Promise<SweepReply> {
  useStore(store);
  const handler = await loadHandler<(event: unknown) => Promise<Record<string, number>>>(name);
  const ctx = newAttempt(name === 'interim-sweep' ? 'sweep' : 'trigger', plan);
  try {
    const summary = await attemptStore.run(ctx, () => handler({ source: 'aws.events', time: store.now().toISOString() }));
    return { summary, injected: ctx.injected };
  } catch (error) {
    return { error: `${(error as Error).name}: ${(error as Error).message}\n${(error as Error).stack}`, injected: ctx.injected };
  }
}

/**
 * The recharge trigger, then the notification relay (what the table's stream and the relay's
 * schedule do in AWS), whatever the trigger's run did: one reply, the relay's count in its
 * summary (`notificationsRelayed`).
 */
export async function runTrigger(store: Store, plan: FaultPlan | null): Promise<SweepReply> {
  const trigger = await runSweep(store, plan, 'recharge-trigger');
  const relay = await runSweep(store, plan, 'notification-relay');
  const injected = [...trigger.injected, ...relay.injected];
  if (trigger.error || relay.error) return { error: [trigger.error, relay.error].filter(Boolean).join('\n'), injected };
  return { summary: { ...trigger.summary, ...relay.summary }, injected };
}

// ------------------------------------------------------------------------ in this process

export class ProcessRuntime implements Runtime {
  private readonly store: Store;
  private readonly db: FaultyDb;
  private readonly restoreLogs: () => void;

  constructor(options: RuntimeOptions) {
    ({ store: this.store, db: this.db } = simulatedStore(options));
    this.restoreLogs = quietLogs();
  }

  http(method: string, path: string, headers: Record<string, string>, body: string, plan: FaultPlan | null, label: string) {
    return runHttp(this.store, method, path, headers, body, plan, label);
  }

  sweep(plan: FaultPlan | null) {
    return runSweep(this.store, plan);
  }

  trigger(plan: FaultPlan | null) {
    return runTrigger(this.store, plan);
  }

  idle() {
    return this.db.idle();
  }

  async stats(): Promise<RuntimeStats> {
    const calls: Record<string, number> = {};
    const injected: Record<string, number> = {};
    add(calls, this.db.calls);
    add(injected, this.db.injected);
    return { calls, injected, containers: 1 };
  }

  async close() {
    this.restoreLogs();
  }
}

// -------------------------------------------------------------------- Lambda containers

interface Pending {
  resolve: (value: any) => void;
}

/**
 * The worker's entry: TypeScript through tsx's API (Node 20 does not apply `--import tsx`
 * to worker threads), then container.ts.
 */
const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(new URL('./container.ts', import.meta.url).href)}); })`
  + `.catch((error) => { console.error('container failed to start', error); process.exit(1); });`;

class Container {
  readonly worker: Worker;
  private next = 0;
  private readonly pending = new Map<number, Pending>();
  private dead: string | null = null;
  ready: Promise<void>;

  constructor(options: RuntimeOptions) {
    this.worker = new Worker(bootstrap, { eval: true, workerData: options, env: process.env });
    this.worker.unref();
    let markReady!: () => void;
    this.ready = new Promise((resolve) => { markReady = resolve; });
    this.worker.on('message', (message: { id?: number; ready?: boolean; reply?: unknown }) => {
      if (message.ready) return markReady();
      const waiting = this.pending.get(message.id!);
      this.pending.delete(message.id!);
      waiting?.resolve(message.reply);
    });
    const die = (why: string) => {
      this.dead ??= why;
      markReady();
      for (const waiting of this.pending.values()) waiting.resolve(this.deadReply());
      this.pending.clear();
    };
    this.worker.on('error', (error) => die(String(error?.stack ?? error)));
    this.worker.on('exit', (code) => die(`container exited with code ${code}`));
  }

  private deadReply() {
    return { status: 599, contentType: '', text: '', injected: [], errors: [], thrown: this.dead, error: this.dead, calls: {}, summary: undefined };
  }

  async ask<T>(request: Record<string, unknown>): Promise<T> {
    await this.ready;
    if (this.dead) return this.deadReply() as T;
    const id = ++this.next;
    return new Promise<T>((resolve) => {
      this.pending.set(id, { resolve });
      this.worker.postMessage({ id, ...request });
    });
  }
}

export class LambdaRuntime implements Runtime {
  private readonly containers: Container[] = [];
  private readonly free: Container[] = [];
  private readonly waiting: Array<(c: Container) => void> = [];

  constructor(private readonly options: RuntimeOptions & { maxContainers: number }) {}

  /** A free container, or a cold start, or (at the cap) the next one to come free. */
  private async acquire(): Promise<Container> {
    const free = this.free.pop();
    if (free) return free;
    if (this.containers.length < this.options.maxContainers) {
      const container = new Container({ ...this.options, twoWriteSteps: this.containers.length % 3 === 2 });
      this.containers.push(container);
      return container;
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(container: Container) {
    const waiter = this.waiting.shift();
    if (waiter) waiter(container);
    else this.free.push(container);
  }

  private async onContainer<T>(request: Record<string, unknown>): Promise<T> {
    const container = await this.acquire();
    try {
      return await container.ask<T>(request);
    } finally {
      this.release(container);
    }
  }

  http(method: string, path: string, headers: Record<string, string>, body: string, plan: FaultPlan | null, label: string) {
    return this.onContainer<HttpReply>({ type: 'http', method, path, headers, body, plan, label });
  }

  sweep(plan: FaultPlan | null) {
    return this.onContainer<SweepReply>({ type: 'sweep', plan });
  }

  trigger(plan: FaultPlan | null) {
    return this.onContainer<SweepReply>({ type: 'trigger', plan });
  }

  async idle() {
    // A container whose last request finished may still run orphaned work (a sweep whose
    // Promise.all failed early): ask every one to drain.
    await Promise.all(this.containers.map((c) => c.ask({ type: 'idle' })));
  }

  async stats(): Promise<RuntimeStats> {
    const calls: Record<string, number> = {};
    const injected: Record<string, number> = {};
    for (const c of this.containers) {
      const s = await c.ask<{ calls: Record<string, number>; injected: Record<string, number> }>({ type: 'stats' });
      add(calls, s.calls);
      add(injected, s.injected);
    }
    return { calls, injected, containers: this.containers.length };
  }

  async close() {
    await Promise.all(this.containers.map((c) => c.worker.terminate()));
  }
}
