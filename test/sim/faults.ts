// Fault injection at the one DynamoDB boundary (Store.db.send). Every call knows the
// request attempt it belongs to through AsyncLocalStorage, so a fault is planned for one
// in-flight attempt and never leaks into another client's work.
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Db } from '../../functions/store/db.js';
import type { Rng } from './prng.js';

export type FaultKind =
  /** ProvisionedThroughputExceededException before sending: nothing written. */
  | 'throttle'
  /** TransactionConflictException / TransactionCanceledException(TransactionConflict) before sending, `times` in a row. */
  | 'conflict'
  /** The write is sent and lands, then the caller sees a TimeoutError: the ambiguous case. */
  | 'timeout'
  /** The handler dies between its two writes: after the account UpdateItem landed, the next TransactWrite never goes out. */
  | 'die';

export interface FaultPlan {
  kind: FaultKind;
  /** Index (0-based) of the first db call of the attempt the fault may hit. */
  atCall: number;
  /** For 'conflict': how many consecutive writes to refuse (6+ exhausts the store's own retries). */
  times: number;
  fired: number;
  /** Leave out the faults that trigger known bugs (see KNOWN_BUGS in simulator.ts). */
  avoidKnownBugs?: boolean;
}

export interface AttemptContext {
  label: string;
  plan: FaultPlan | null;
  calls: number;
  accountWritten: boolean;
  /** Faults that actually fired in this attempt, e.g. "timeout@UpdateCommand". */
  injected: string[];
  /** Errors the handlers logged as unhandled during this attempt. */
  errors: string[];
}

export const attemptStore = new AsyncLocalStorage<AttemptContext>();

export function newAttempt(label: string, plan: FaultPlan | null): AttemptContext {
  return { label, plan, calls: 0, accountWritten: false, injected: [], errors: [] };
}

/** Draws a fault plan for one attempt, or null. `p` is the chance that the attempt is faulty. */
export function drawPlan(rng: Rng, p: number, options: { avoidKnownBugs?: boolean } = {}): FaultPlan | null {
  if (!rng.chance(p)) return null;
  const kind = rng.weighted({ throttle: 3, conflict: 3, timeout: 3, die: 3 } as Record<FaultKind, number>);
  const times = kind === 'conflict' ? (rng.chance(0.1) ? 6 : rng.range(1, 3)) : 1;
  return { kind, atCall: rng.int(4), times, fired: 0, ...(options.avoidKnownBugs ? { avoidKnownBugs: true } : {}) };
}

const named = (name: string, message: string, extra: Record<string, unknown> = {}) =>
  Object.assign(new Error(message), { name, ...extra });

function conflictError(commandName: string): Error {
  if (commandName === 'TransactWriteCommand') {
    return named('TransactionCanceledException', 'Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict]', {
      CancellationReasons: [{ Code: 'TransactionConflict', Message: 'Transaction is ongoing for the item' }, { Code: 'None' }, { Code: 'None' }],
    });
  }
  return named('TransactionConflictException', 'Transaction is ongoing for the item');
}

const WRITES = new Set(['UpdateCommand', 'PutCommand', 'DeleteCommand', 'TransactWriteCommand']);

export class FaultyDb implements Db {
  enabled = true;
  inflight = 0;
  readonly injected = new Map<string, number>();
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly inner: Db) {}

  /** Calls by command name, for the calls-per-operation figure. */
  readonly calls = new Map<string, number>();

  async send(command: any): Promise<any> {
    const name: string = command?.constructor?.name ?? 'Command';
    this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
    this.inflight++;
    try {
      return await this.route(command);
    } finally {
      this.inflight--;
      if (this.inflight === 0) this.idleWaiters.splice(0).forEach((resolve) => resolve());
    }
  }

  /** Resolves once no db call is in flight (orphaned work of a failed Promise.all included). */
  async idle(): Promise<void> {
    for (let round = 0; round < 3; round++) {
      if (this.inflight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      await new Promise((r) => setTimeout(r, 5)); // let continuations start their next call
    }
    if (this.inflight > 0) return this.idle();
  }

  private count(kind: string, ctx: AttemptContext, where: string) {
    this.injected.set(kind, (this.injected.get(kind) ?? 0) + 1);
    ctx.injected.push(`${kind}@${where}`);
  }

  private async route(command: any): Promise<any> {
    const ctx = attemptStore.getStore();
    const name: string = command?.constructor?.name ?? 'Command';
    const plan = this.enabled ? ctx?.plan : null;
    if (ctx && plan) {
      const index = ctx.calls++;
      const isWrite = WRITES.has(name);
      if (plan.kind === 'throttle' && plan.fired === 0 && index >= plan.atCall) {
        plan.fired++;
        this.count('throttle', ctx, name);
        throw named('ProvisionedThroughputExceededException', 'The level of configured provisioned throughput for the table was exceeded', { $retryable: { throttling: true } });
      }
      // A fault that triggers a bug listed in KNOWN_BUGS is left out here when `plan.avoidKnownBugs`
      // (none is listed now).
      if (plan.kind === 'conflict' && isWrite && plan.fired < plan.times && index >= plan.atCall) {
        plan.fired++;
        this.count(plan.times >= 6 ? 'conflict(exhausting)' : 'conflict', ctx, name);
        throw conflictError(name);
      }
      if (plan.kind === 'timeout' && isWrite && plan.fired === 0 && index >= plan.atCall) {
        plan.fired++;
        this.count('timeout-after-write', ctx, name);
        await this.inner.send(command).catch(() => undefined);
        throw named('TimeoutError', 'socket timed out after the request was sent');
      }
      if (plan.kind === 'die' && plan.fired === 0 && ctx.accountWritten && name === 'TransactWriteCommand') {
        plan.fired++;
        this.count('die-between-writes', ctx, name);
        throw named('HandlerDied', 'the Lambda died between the account write and the record write');
      }
    }
    const result = await this.inner.send(command);
    if (ctx && name === 'UpdateCommand' && String(command.input?.Key?.pk ?? '').startsWith('ACC#')) ctx.accountWritten = true;
    return result;
  }
}
