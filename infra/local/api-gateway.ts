// A small API Gateway HTTP API (payload format 2.0) emulation: it turns a Node HTTP
// request into the event AWS would send and feeds it to the very Lambda handler that
// AWS runs. No route has a second implementation.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { routes, type Route, type HandlerName, type ScheduledHandlerName, handlerEntry } from '../../functions/http/routes.js';

type LambdaHandler = (event: APIGatewayProxyEventV2, context: any) => Promise<APIGatewayProxyResultV2>;

export interface LocalApiOptions {
  port: number;
  /** Extra routes the local server answers itself, e.g. running a schedule now. */
  extra?: (method: string, path: string) => (() => Promise<{ status: number; body: unknown }>) | undefined;
}

const handlerCache = new Map<string, Promise<any>>();
/** Loads a handler module by name, from the same entry file the CDK stack bundles. */
export async function loadHandler<H = LambdaHandler>(name: HandlerName | ScheduledHandlerName): Promise<H> {
  if (!handlerCache.has(name)) {
    const url = new URL(`../../${handlerEntry(name).replace(/\.ts$/, '.js')}`, import.meta.url);
    handlerCache.set(name, import(url.href).then((m) => m.handler));
  }
  return handlerCache.get(name)!;
}

const matchers = routes.map((route) => {
  const names: string[] = [];
  const pattern = route.path.replace(/\{(\w+)\}/g, (_, name: string) => { names.push(name); return '([^/]+)'; });
  return { route, names, regex: new RegExp(`^${pattern}$`) };
});

export function matchRoute(method: string, path: string): { route: Route; params: Record<string, string> } | 'method_not_allowed' | null {
  return matchRouteOrAllowed(method, path).matched;
}

/** The route, or what methods the path allows (for a 405's `Allow`, RFC 9110). */
function matchRouteOrAllowed(method: string, path: string): { matched: { route: Route; params: Record<string, string> } | 'method_not_allowed' | null; allowed: string[] } {
  const allowed: string[] = [];
  for (const { route, names, regex } of matchers) {
    const m = regex.exec(path);
    if (!m) continue;
    if (route.method !== method) { allowed.push(route.method); continue; }
    const params: Record<string, string> = {};
    names.forEach((name, i) => {
      const raw = m[i + 1]!;
      try { params[name] = decodeURIComponent(raw); } catch { params[name] = raw; }
    });
    return { matched: { route, params }, allowed };
  }
  return { matched: allowed.length ? 'method_not_allowed' : null, allowed };
}

export function toEvent(method: string, url: URL, route: Route, params: Record<string, string>, headers: Record<string, string>, body: string): APIGatewayProxyEventV2 {
  const now = new Date();
  return {
    version: '2.0',
    routeKey: `${route.method} ${route.path}`,
    rawPath: url.pathname,
    rawQueryString: url.search.replace(/^\?/, ''),
    headers,
    // API Gateway joins the values of a repeated parameter with commas.
    queryStringParameters: url.searchParams.size ? Object.fromEntries([...new Set(url.searchParams.keys())].map((k) => [k, url.searchParams.getAll(k).join(',')])) : undefined,
    pathParameters: Object.keys(params).length ? params : undefined,
    requestContext: {
      accountId: '000000000000', apiId: 'local', domainName: headers.host ?? 'localhost', domainPrefix: 'local',
      http: { method, path: url.pathname, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: headers['user-agent'] ?? '' },
      requestId: randomUUID(), routeKey: `${route.method} ${route.path}`, stage: '$default',
      time: now.toUTCString(), timeEpoch: now.getTime(),
    },
    body: body === '' ? undefined : body,
    isBase64Encoded: false,
  } as APIGatewayProxyEventV2;
}

/** Fixed titles, one per problem type (RFC 9457): the detail says what happened this time. */
const localTitles: Record<number, string> = {
  400: 'The request is not valid', 401: 'Credentials are missing or wrong', 404: 'Not found', 405: 'Method not allowed',
  409: 'Conflict with the current state', 413: 'The body is too large', 500: 'The local server failed',
};

function problem(res: ServerResponse, status: number, code: string, detail: string, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/problem+json', ...headers });
  res.end(JSON.stringify({ type: `https://charging.example/problems/${code}`, title: localTitles[status] ?? detail, status, code, detail }));
}

async function readBody(req: IncomingMessage, limitBytes: number): Promise<string | null> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limitBytes) return null;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function dispatch(method: string, url: URL, headers: Record<string, string>, body: string): Promise<APIGatewayProxyStructuredResultV2> {
  const matched = matchRoute(method, url.pathname);
  if (matched === null) return { statusCode: 404, body: JSON.stringify({ code: 'not_found' }) };
  if (matched === 'method_not_allowed') return { statusCode: 405, body: JSON.stringify({ code: 'method_not_allowed' }) };
  const handler = await loadHandler(matched.route.handler);
  const result = await handler(toEvent(method, url, matched.route, matched.params, headers, body), { functionName: matched.route.handler, getRemainingTimeInMillis: () => 30_000 });
  return typeof result === 'string' ? { statusCode: 200, body: result } : result;
}

export function startLocalApi(options: LocalApiOptions): Promise<Server> {
  const server = createServer(async (req, res) => {
    try {
      // A fixed base: a malformed Host header must not make the URL unparsable.
      const url = new URL(req.url ?? '/', 'http://localhost');
      const method = (req.method ?? 'GET').toUpperCase();
      const body = await readBody(req, 1024 * 1024); // API Gateway's payload cap is larger; 1 MiB is plenty here
      // The rest of the body is not read: the connection closes (fails before: the client's
      // next request on it was reset; review 7 of stop 26).
      if (body === null) return problem(res, 413, 'payload_too_large', 'body over 1 MiB', { connection: 'close' });
      const local = options.extra?.(method, url.pathname);
      if (local) {
        // The local operator routes need the same token as the API (API.md: every route but /health).
        const token = process.env.CHARGING_API_TOKEN;
        // The scheme is case-insensitive (RFC 9110), as the API's own check has it (functions/http/handler.ts).
        const given = /^Bearer\s+(.*)$/i.exec(req.headers.authorization ?? '')?.[1];
        if (token && given !== token) return problem(res, 401, 'unauthorized', 'missing or wrong bearer token');
        const { status, body: answer } = await local();
        if (status >= 400) { const { code, detail } = answer as { code: string; detail: string }; return problem(res, status, code, detail); }
        res.writeHead(status, { 'content-type': 'application/json' });
        return res.end(JSON.stringify(answer));
      }
      const { matched, allowed } = matchRouteOrAllowed(method, url.pathname);
      if (matched === null) return problem(res, 404, 'not_found', `no route ${method} ${url.pathname}`);
      if (matched === 'method_not_allowed') return problem(res, 405, 'method_not_allowed', `${method} is not allowed on ${url.pathname}`, { allow: [...new Set(allowed)].join(', ') });
      const headers = Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k.toLowerCase(), Array.isArray(v) ? v.join(',') : String(v ?? '')]));
      const result = await dispatch(method, url, headers, body);
      res.writeHead(result.statusCode ?? 200, (result.headers ?? {}) as Record<string, string>);
      res.end(result.body ?? '');
    } catch (error) {
      console.error(error);
      problem(res, 500, 'internal_error', 'the local server failed');
    }
  });
  return new Promise((resolve) => server.listen(options.port, '127.0.0.1', () => resolve(server)));
}
