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

/**
 * The refusals a repeat must get again (API.md: same requestId, same body, the original
 * answer): those of an account that exists, which a top-up or a reactivation could change.
 * Stored with their HTTP status, which must be http/problem.ts's (test/http/problems.test.ts).
 */
export const keptRefusalStatus: Partial<Record<ErrorCode, number>> = { insufficient_credit: 402, account_inactive: 403 };
/**
 * A refund's refusals are kept too (on its session): what it may give back changes with the
 * session's state and other refunds, and a repeat must not succeed, or be told another
 * `refundable`, later.
 */
export const keptRefundRefusalStatus: Partial<Record<ErrorCode, number>> = { conflict: 409 };

/**
 * A recharge refused against its service account's settings as they are now (no
 * rechargeAmount, an amount that buys nothing at today's rate) is kept too: a PUT may change
 * them, and a repeat must not then move money (review 12 of stop 27).
 */
export const keptRechargeRefusalStatus: Partial<Record<ErrorCode, number>> = { ...keptRefusalStatus, validation_failed: 400 };
/**
 * Likewise a reserve or an event charge refused against today's rating or routing (an amount
 * that buys no block at the price, a service account in another unit): a PUT may change them.
 */
export const keptRatingRefusalStatus: Partial<Record<ErrorCode, number>> = { ...keptRechargeRefusalStatus, conflict: 409 };

/**
 * A step, refund or agreement refused because the session is closed is kept on it too: a
 * session never reopens, but the same requestId with another body went through (a refund),
 * and a repeat was told idempotency_conflict (review 11 of stop 27). So is one refused for
 * the session's state otherwise: a game's update or debit before every party agreed must not
 * be applied when repeated once the game started (review 21 of stop 28).
 */
export const keptSessionRefusalStatus: Partial<Record<ErrorCode, number>> = { session_closed: 409, conflict: 409 };

/** The answer a refusal is kept as, or null when `error` is not one to keep. */
export function keptRefusal(error: unknown, statuses = keptRefusalStatus): { status: number; body: Record<string, unknown> } | null {
  const status = error instanceof ChargingError ? statuses[error.code] : undefined;
  if (status === undefined) return null;
  const refusal = error as ChargingError;
  return { status, body: { code: refusal.code, detail: refusal.message, ...refusal.extra } };
}

export const fail = (code: ErrorCode, detail: string, extra?: Record<string, unknown>): never => {
  throw new ChargingError(code, detail, extra);
};

/** The same requestId came with another body: refused whatever that body would have been answered. */
export const reusedRequestId = (requestId: string): never => fail('idempotency_conflict', `requestId ${requestId} was used with another body`);

/** An invariant of the ledger is broken: a bug, never a client mistake. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`invariant violated: ${message}`);
}
