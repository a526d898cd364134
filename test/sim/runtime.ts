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
import { createStore, documentClient, type Store } from '../../functions/store/db.js';
import { useStore } from '../../functions/config.js';
import { dispatch, loadHandler } from '../../infra/local/api-gateway.js';
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
}

const add = (into: Record<string, number>, from: Map<string, number> | Record<string, number>) => {
  for (const [k, v] of from instanceof Map ? from : Object.entries(from)) into[k] = (into[k] ?? 0) + v;
};

/** The store a container (or this process) gives the handlers. */
export function simulatedStore(options: RuntimeOptions): { store: Store; db: FaultyDb } {
  const clock = new BigInt64Array(options.clock);
  const db = new FaultyDb(documentClient({ endpoint: options.endpoint }));
  const now = options.realisticClock ? () => new Date(Number(Atomics.add(clock, 0, 1n) + 1n)) : () => new Date(Number(Atomics.load(clock, 0)));
  const store = createStore({ tableName: options.tableName, endpoint: options.endpoint, now, serviceCacheMs: options.serviceCacheMs, db });
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
  return () => {
    (logger as any).error = originalError;
    logger.setLogLevel(originalLevel);
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

export async function runSweep(store: Store, plan: FaultPlan | null): Promise<SweepReply> {
  useStore(store);
  const handler = await loadHandler<(event: unknown) => Promise<Record<string, number>>>('interim-sweep');
  const ctx = newAttempt('sweep', plan);
  try {
    const summary = await attemptStore.run(ctx, () => handler({ source: 'aws.events', time: store.now().toISOString() }));
    return { summary, injected: ctx.injected };
  } catch (error) {
    return { error: `${(error as Error).name}: ${(error as Error).message}\n${(error as Error).stack}`, injected: ctx.injected };
  }
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
      const container = new Container(this.options);
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
