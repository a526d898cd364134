// The one table from outcome codes to HTTP. RFC 9457 problem details.
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { isThrottlingError, isTransientError } from '@smithy/core/retry';
import { ChargingError, type ErrorCode } from '../domain/errors.js';
import { cancellationReasons, isTransientConflict } from '../store/errors.js';

const statusOf: Record<ErrorCode, { status: number; title: string }> = {
  validation_failed: { status: 400, title: 'The request is not valid' },
  unauthorized: { status: 401, title: 'Credentials are missing or wrong' },
  insufficient_credit: { status: 402, title: 'Insufficient credit' },
  account_inactive: { status: 403, title: 'The account is not active' },
  not_found: { status: 404, title: 'Not found' },
  idempotency_conflict: { status: 409, title: 'requestId reused with another body' },
  session_closed: { status: 409, title: 'The session is closed' },
  conflict: { status: 409, title: 'Conflict with the current state' },
  request_in_progress: { status: 409, title: 'The same request is being processed' },
  // A 5xx, so clients retry: whatever moved already is finished by the retry (same requestId).
  temporarily_unavailable: { status: 503, title: 'Temporarily unavailable; retry with the same requestId' },
};

export function problemBody(code: ErrorCode, detail: string, extra: Record<string, unknown> = {}) {
  const { status, title } = statusOf[code];
  return { type: `https://charging.example/problems/${code}`, title, status, code, detail, ...extra };
}

/** Seconds a client should wait before sending a 503'd request again. */
const RETRY_AFTER_SECONDS = 1;

/**
 * Object keys in one order, whatever order they were built or stored in: a repeated request
 * is answered from what the table kept (whose maps come back in no particular order), and
 * API.md promises it the original answer, so the bytes must not depend on how it was read.
 */
function sortedKeys(_key: string, value: unknown): unknown {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function json(status: number, body: unknown): APIGatewayProxyResultV2 {
  const isProblem = status >= 400;
  return {
    statusCode: status,
    headers: {
      'content-type': isProblem ? 'application/problem+json' : 'application/json',
      ...(status === 503 ? { 'retry-after': String(RETRY_AFTER_SECONDS) } : {}),
    },
    body: JSON.stringify(body, sortedKeys),
  };
}

/**
 * DynamoDB overloaded, in a transaction with another writer, or not answering in time
 * (throttling, conflicts, timeouts, its own 5xx), after the SDK's and the store's retries:
 * retryable and not our bug, so a 503 the client retries rather than a 500 that pages
 * someone. The classification is the SDK's own (what its retry strategy retries), plus the
 * transaction conflicts it leaves to the caller, as the store's retry sees them.
 */
export function isTransientStoreError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (isTransientConflict(error)) return true;
  const reasons = cancellationReasons(error);
  if (reasons) return reasons.some((r) => r.Code === 'ThrottlingError' || r.Code === 'ProvisionedThroughputExceeded');
  return isThrottlingError(error as never) || isTransientError(error as never);
}

export function problemResponse(error: unknown): APIGatewayProxyResultV2 & { statusCode: number } {
  if (error instanceof ChargingError) {
    const body = problemBody(error.code, error.message, error.extra);
    return json(body.status, body) as APIGatewayProxyResultV2 & { statusCode: number };
  }
  if (isTransientStoreError(error)) {
    const body = problemBody('temporarily_unavailable', 'the database is busy or did not answer in time; retry with the same requestId');
    return json(body.status, body) as APIGatewayProxyResultV2 & { statusCode: number };
  }
  // Anything else is our fault: say so without leaking internals.
  return json(500, { type: 'about:blank', title: 'Internal error', status: 500, code: 'internal_error', detail: 'the server failed; the request may be retried with the same requestId' }) as APIGatewayProxyResultV2 & { statusCode: number };
}

/** A stored answer of a state-changing request: problems stored as bodies keep their shape. */
export function answerResponse(answer: { status: number; body: Record<string, unknown> }): APIGatewayProxyResultV2 {
  if (answer.status >= 400 && typeof answer.body.code === 'string') {
    const { code, detail, ...extra } = answer.body as { code: ErrorCode; detail: string };
    return json(answer.status, problemBody(code, detail, extra));
  }
  return json(answer.status, answer.body);
}
