// Outcomes a caller can expect, as typed errors. The HTTP status for each code lives in
// one table (functions/http/problem.ts); the domain never speaks HTTP.
export type ErrorCode =
  | 'validation_failed'
  | 'unauthorized'
  | 'insufficient_credit'
  | 'account_inactive'
  | 'not_found'
  | 'idempotency_conflict'
  | 'session_closed'
  | 'conflict'
  | 'request_in_progress'
  /** Contention that outlasted the retries (e.g. DynamoDB transaction conflicts): the same request may be sent again. */
  | 'temporarily_unavailable';

export class ChargingError extends Error {
  readonly code: ErrorCode;
  readonly extra: Record<string, unknown>;
  constructor(code: ErrorCode, detail: string, extra: Record<string, unknown> = {}) {
    super(detail);
    this.name = 'ChargingError';
    this.code = code;
    this.extra = extra;
  }
}

export const fail = (code: ErrorCode, detail: string, extra?: Record<string, unknown>): never => {
  throw new ChargingError(code, detail, extra);
};

/** An invariant of the ledger is broken: a bug, never a client mistake. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}
