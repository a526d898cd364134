// The one table from outcomes to HTTP: expected outcomes keep their codes, DynamoDB being
// busy or slow is a retryable 503 (with Retry-After), and only our own failures are 500s.
import { describe, expect, it } from 'vitest';
import { ChargingError, keptSessionRefusalStatus, keptRatingRefusalStatus, keptRechargeRefusalStatus, keptRefundRefusalStatus, keptRefusalStatus, type ErrorCode } from '../../functions/domain/errors.js';
import type { APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { problemBody, problemResponse } from '../../functions/http/problem.js';

const named = (name: string, extra: Record<string, unknown> = {}) => Object.assign(new Error(`${name} happened`), { name, ...extra });
const canceled = (...codes: string[]) => named('TransactionCanceledException', { CancellationReasons: codes.map((Code) => ({ Code })) });

describe('problemResponse', () => {
  const cases: [string, unknown, number, string][] = [
    ['insufficient credit', new ChargingError('insufficient_credit', 'short'), 402, 'insufficient_credit'],
    ['contention outlasting the store retries', new ChargingError('temporarily_unavailable', 'busy'), 503, 'temporarily_unavailable'],
    ['throttled (on-demand table)', named('ThrottlingException'), 503, 'temporarily_unavailable'],
    ['throttled (provisioned)', named('ProvisionedThroughputExceededException', { $retryable: { throttling: true } }), 503, 'temporarily_unavailable'],
    ['request limit of the account', named('RequestLimitExceeded'), 503, 'temporarily_unavailable'],
    ['a transaction on the same item', named('TransactionConflictException'), 503, 'temporarily_unavailable'],
    ['a transaction cancelled by a conflict', canceled('None', 'TransactionConflict'), 503, 'temporarily_unavailable'],
    ['a transaction cancelled by throttling', canceled('ThrottlingError', 'None'), 503, 'temporarily_unavailable'],
    ['DynamoDB answering 500', named('InternalServerError', { $metadata: { httpStatusCode: 500 } }), 503, 'temporarily_unavailable'],
    ['a timeout', named('TimeoutError'), 503, 'temporarily_unavailable'],
    ['a connection reset', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 503, 'temporarily_unavailable'],
    // A refused condition that escaped the store is a bug of ours, not contention.
    ['a transaction cancelled by a condition', canceled('ConditionalCheckFailed', 'None'), 500, 'internal_error'],
    ['a validation error from DynamoDB', named('ValidationException', { $metadata: { httpStatusCode: 400 } }), 500, 'internal_error'],
    ['a bug', new TypeError('x is undefined'), 500, 'internal_error'],
    ['not even an Error', 'boom', 500, 'internal_error'],
  ];
  it.each(cases)('%s', (_what, error, status, code) => {
    const response = problemResponse(error) as APIGatewayProxyStructuredResultV2;
    expect(response.statusCode).toBe(status);
    expect(JSON.parse(response.body as string)).toMatchObject({ status, code });
    expect(response.headers?.['content-type']).toBe('application/problem+json');
    expect(response.headers?.['retry-after']).toBe(status === 503 ? '1' : undefined);
  });
});

describe('kept refusals', () => {
  it('are stored with the status the one table maps their code to', () => {
    for (const [code, status] of Object.entries({ ...keptRefusalStatus, ...keptRefundRefusalStatus, ...keptRechargeRefusalStatus, ...keptSessionRefusalStatus, ...keptRatingRefusalStatus })) expect(problemBody(code as ErrorCode, 'x').status).toBe(status);
  });
});
