// The thin edge every HTTP handler shares: middy with three small middlewares (errors to
// problems, bearer token where the local server asks for one, JSON body parsing) and a
// valibot-based `parse` that turns any bad input into validation_failed.
import middy from '@middy/core';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, Context } from 'aws-lambda';
import { getDotPath, safeParse, type GenericSchema, type InferOutput } from 'valibot';
import { ChargingError, fail } from '../domain/errors.js';
import { isTransientStoreError, problemResponse } from './problem.js';
import { identifier as identifierSchema } from './schemas.js';
import { logger } from './logger.js';

export { logger };

export interface HttpRequest {
  /** "POST /sessions/{sessionId}/update" */
  routeKey: string;
  params: Record<string, string>;
  query: Record<string, string>;
  body: unknown;
}

type Handler = (request: HttpRequest) => Promise<APIGatewayProxyResultV2>;

function problemsOnError(): middy.MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyResultV2> {
  return {
    onError: async (request) => {
      if (isTransientStoreError(request.error)) logger.warn('database busy or slow: answered 503', { error: request.error as Error });
      else if (!(request.error instanceof ChargingError)) logger.error('unhandled error', { error: request.error as Error });
      request.response = problemResponse(request.error);
    },
  };
}

function bearerToken(): middy.MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyResultV2> {
  return {
    before: async (request) => {
      // Read here, not through functions/config.ts: that module builds the DynamoDB and
      // EventBridge clients, which every function (GET /health too) would then carry.
      // Set only where the local server guards the API; in AWS, IAM guards it.
      const expected = process.env.CHARGING_API_TOKEN;
      if (!expected || request.event.routeKey === 'GET /health') return;
      const header = request.event.headers?.authorization ?? request.event.headers?.Authorization ?? '';
      const given = Buffer.from(header.replace(/^Bearer\s+/i, ''));
      const wanted = Buffer.from(expected);
      if (!/^Bearer\s+/i.test(header) || given.length !== wanted.length || !timingSafeEqual(given, wanted)) {
        fail('unauthorized', 'send Authorization: Bearer <token>');
      }
    },
  };
}

function parseBody(event: APIGatewayProxyEventV2): unknown {
  // A GET reads no body: one sent is ignored, not refused (fails before: 400 on GET /health
  // with a stray body; review 7 of stop 26).
  if (event.body === undefined || event.body === null || event.body === '' || event.requestContext?.http?.method === 'GET') return undefined;
  const text = event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return fail('validation_failed', 'the body is not valid JSON');
  }
  if (writesFraction(text)) fail('validation_failed', 'numbers are whole: write 1, not 1.0 or 1e0');
  return body;
}

/**
 * Whether valid JSON `text` writes a number with a fraction or an exponent. Every number of
 * the API is whole, and JSON.parse rounds 1.0000000000000001 to 1, which an integer check then
 * takes for a whole number (fails before: such a top-up was applied; review 7 of stop 26):
 * the text itself must say so. Strings, escapes included, are skipped.
 */
export function writesFraction(text: string): boolean {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 92 /* \ */) i++;
      else if (c === 34 /* " */) inString = false;
    } else if (c === 34) {
      inString = true;
    } else if (c === 45 /* - */ || (c >= 48 && c <= 57)) {
      // A number token: digits, sign, point, exponent.
      let j = i;
      while (j < text.length && /[-+0-9.eE]/.test(text[j]!)) j++;
      if (/[.eE]/.test(text.slice(i, j))) return true;
      i = j - 1;
    }
  }
  return false;
}

export function httpHandler(handle: Handler) {
  return middy<APIGatewayProxyEventV2, APIGatewayProxyResultV2, Error, Context>()
    .use(problemsOnError())
    .use(bearerToken())
    .handler(async (event) => handle({
      routeKey: event.routeKey,
      params: (event.pathParameters ?? {}) as Record<string, string>,
      query: (event.queryStringParameters ?? {}) as Record<string, string>,
      body: parseBody(event),
    }));
}

/** `what`: how the problem names the value when the issue is with it as a whole (a path parameter's name). */
export function parse<S extends GenericSchema>(schema: S, value: unknown, what = 'body'): InferOutput<S> {
  const result = safeParse(schema, value);
  if (!result.success) {
    const errors = result.issues.map((issue) => ({ path: getDotPath(issue) ?? '', message: issue.message }));
    const first = errors[0];
    fail('validation_failed', first ? `${first.path || what}: ${first.message}` : 'invalid request', { errors });
  }
  return result.output as InferOutput<S>;
}

/** Identifies "the same body" for idempotency: canonical JSON of the route, path and body. */
export function requestHash(request: HttpRequest, body: unknown): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical);
    if (value && typeof value === 'object') {
      return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]));
    }
    return value;
  };
  const text = JSON.stringify(canonical({ route: request.routeKey, params: request.params, body }));
  return createHash('sha256').update(text).digest('base64url').slice(0, 32);
}

export function pathParam(request: HttpRequest, name: string): string {
  const value = request.params[name];
  // Path parameters are identifiers too; API Gateway hands them URL-decoded.
  return parse(identifierSchema, value, name);
}

