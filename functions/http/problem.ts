// The one table from outcome codes to HTTP. RFC 9457 problem details.
import type { APIGatewayProxyResultV2 } from 'aws-lambda';
import { ChargingError, type ErrorCode } from '../domain/errors.js';

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

export function json(status: number, body: unknown): APIGatewayProxyResultV2 {
  const isProblem = status >= 400;
  return {
    statusCode: status,
    headers: { 'content-type': isProblem ? 'application/problem+json' : 'application/json' },
    body: JSON.stringify(body),
  };
}

export function problemResponse(error: unknown): APIGatewayProxyResultV2 & { statusCode: number } {
  if (error instanceof ChargingError) {
    const body = problemBody(error.code, error.message, error.extra);
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
