// Bundle size per function, built the way the stack builds it (infra/bundling.ts), in
// memory, held to the deploy issue's target of 250 KB minified: the charging functions passed
// it unseen at stops 21 and 22, when this test checked only a blow-up. Figures and load
// times (a timing, so not a test) are `npm run bench:bundles`.
import { describe, expect, it } from 'vitest';
import { build, type Metafile } from 'esbuild';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { entryOf, esbuildBuildOptions, functionNames, repoRoot, type FunctionName } from '../../infra/bundling.js';
import { createStore, ensureTable } from '../../functions/store/db.js';
import { dynamodbEndpoint, uniqueTable } from '../helpers.js';

/** The target. The functions are 197-250 KB (health 37 KB), of which the slimmed DynamoDB client is ~152 KB. */
const LIMIT_BYTES = 250 * 1024;
/** valibot with the schemas a handler uses is 3-10 KB (zod/mini was 12-31 KB, the full zod ~450 KB). */
const VALIDATION_LIMIT_BYTES = 32 * 1024;
const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KB`;

/** Bytes in the output per npm package (or "(own code)"), largest first. */
function byPackage(metafile: Metafile): Array<[string, number]> {
  const totals = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input);
      const name = match ? match[1]! : '(own code)';
      totals.set(name, (totals.get(name) ?? 0) + bytesInOutput);
    }
  }
  return [...totals].sort((a, b) => b[1] - a[1]);
}

describe('bundle sizes', () => {
  it(`every function bundles (minified ESM, AWS SDK included) within ${kb(LIMIT_BYTES)}, valibot under ${kb(VALIDATION_LIMIT_BYTES)}`, async () => {
    const rows: Array<{ function: string; minified: string; bytes: number; validation: number; largest: string }> = [];
    const jsonImports: string[] = [];
    for (const name of functionNames) {
      const result = await build({ ...esbuildBuildOptions(entryOf(name)), write: false, metafile: true, logLevel: 'silent' });
      const bytes = result.outputFiles.reduce((sum, file) => sum + file.contents.byteLength, 0);
      const packages = byPackage(result.metafile);
      const largest = packages.slice(0, 4).map(([pkg, size]) => `${pkg} ${kb(size)}`).join(', ');
      rows.push({ function: name, minified: kb(bytes), bytes, validation: packages.find(([pkg]) => pkg === 'valibot')?.[1] ?? 0, largest });
      jsonImports.push(...Object.keys(result.metafile.inputs).filter((input) => input.endsWith('.json')));
    }
    // JSON bundles as nothing (infra/bundling.ts): only the SDK clients' package.json, whose
    // one field read, the version, functions/sdk-clients.ts gives them.
    expect(new Set(jsonImports)).toEqual(new Set(jsonImports.filter((input) => /(^|\/)node_modules\/@aws-sdk\/client-(dynamodb|eventbridge)\/package\.json$/.test(input))));
    console.log(`\nbundle sizes (target ${kb(LIMIT_BYTES)}; figures and load times: npm run bench:bundles):`);
    console.table(rows.map(({ bytes: _bytes, validation: _validation, ...row }) => row));
    for (const row of rows) {
      expect({ function: row.function, tooLarge: row.bytes > LIMIT_BYTES }).toEqual({ function: row.function, tooLarge: false });
      expect({ function: row.function, validationTooLarge: row.validation >= VALIDATION_LIMIT_BYTES }).toEqual({ function: row.function, validationTooLarge: false });
    }
  }, 120_000);
});

/** Lambda's environment, as far as the bundles read it: credentials in the environment, no ~/.aws. */
const lambdaEnv = (dir: string, tableName: string) => ({
  PATH: process.env.PATH, HOME: dir, TABLE_NAME: tableName, AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL_DYNAMODB: dynamodbEndpoint(),
  AWS_ACCESS_KEY_ID: 'AKIDBUNDLETEST', AWS_SECRET_ACCESS_KEY: 'bundle-test-secret', AWS_SESSION_TOKEN: 'bundle-test-token',
  AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs22.x', AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', POWERTOOLS_LOG_LEVEL: 'ERROR',
});

/**
 * Each function of `steps` bundled as the stack bundles it, then every step (a function and
 * its event) run in order in one fresh Node process with Lambda's environment, against a new
 * table on DynamoDB Local: the answers, in order.
 */
async function runBundled(steps: Array<[FunctionName, unknown]>): Promise<Array<{ statusCode: number; body: string }>> {
  const tableName = uniqueTable('bundle');
  await ensureTable(createStore({ tableName, endpoint: dynamodbEndpoint() }));
  const dir = mkdtempSync(join(tmpdir(), 'bundle-'));
  try {
    const used = [...new Set(steps.map(([name]) => name))];
    for (const name of used) {
      await build({ ...esbuildBuildOptions(entryOf(name)), outfile: join(dir, name, 'index.mjs'), logLevel: 'silent' });
    }
    writeFileSync(join(dir, 'run.mjs'), `${used.map((name, i) => `import { handler as h${i} } from './${name}/index.mjs';`).join('\n')}
const handlers = { ${used.map((name, i) => `'${name}': h${i}`).join(', ')} };
const answers = [];
for (const [name, event] of ${JSON.stringify(steps)}) answers.push(await handlers[name](event, { awsRequestId: 'bundle-test', functionName: name, getRemainingTimeInMillis: () => 10000 }));
console.log(JSON.stringify(answers));`);
    const { stdout } = await promisify(execFile)(process.execPath, [join(dir, 'run.mjs')], { cwd: dir, env: lambdaEnv(dir, tableName) });
    return JSON.parse(stdout.trim().split('\n').pop()!);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const sampleEvent = (file: string) => JSON.parse(readFileSync(join(repoRoot, 'events', `${file}.json`), 'utf8'));

describe('a bundle as Lambda runs it', () => {
  // The bundles swap the SDK's default credential chain and its event streams for stand-ins
  // (infra/bundle-aliases/): the bundled function, alone in a fresh Node process with only
  // what Lambda gives it (credentials in the environment, no ~/.aws), must still sign and
  // send its calls. Here against DynamoDB Local, which accepts any credentials.
  it('the services function, bundled, writes and reads a service with credentials from the environment', async () => {
    const answers = await runBundled([['services', sampleEvent('put-service')], ['services', sampleEvent('get-service')]]);
    expect(answers.map((a) => a.statusCode)).toEqual([200, 200]);
    expect(JSON.parse(answers[1]!.body)).toMatchObject({ serviceId: 'voice' });
  }, 60_000);
});

describe('the charging functions, bundled, as Lambda runs them', () => {
  // The charging path through the stand-ins of infra/bundle-aliases/ (the SDK's checksum and
  // lib-dynamodb entries, and the credential chain): each function bundled
  // alone, in one fresh Node process with only what Lambda gives it, against DynamoDB Local.
  // The answers must be those the same events get from the handlers unbundled (events.test.ts),
  // problems (valibot's issues and our messages) included.
  it('services, accounts, reserve, update, debit and refund answer the sample events, and reserve its problems', async () => {
    const steps: Array<[FunctionName, unknown]> = [];
    const reserve = sampleEvent('reserve');
    const badReserve = (body: unknown) => ({ ...reserve, body: JSON.stringify(body) });
    const reserveBody = JSON.parse(reserve.body);
    for (const [name, file] of [['services', 'put-service'], ['accounts', 'create-account'], ['accounts', 'topup'], ['reserve', 'reserve'],
      ['update', 'update'], ['debit', 'debit'], ['refund', 'refund']] as Array<[FunctionName, string]>) steps.push([name, sampleEvent(file)]);
    // (A float is refused before the schema, by the body's text: a negative has valibot's issues.)
    steps.push(['reserve', badReserve({ ...reserveBody, requested: { units: -1 }, clientId: 7, extra: true })]);
    steps.push(['reserve', badReserve({ ...reserveBody, requested: { units: 1, amount: 1 }, notifyUri: 'not a url' })]);
    steps.push(['reserve', badReserve({ requestId: 'p-1', parties: [{ accountId: 'alice' }], principle: { type: 'shares', shares: { 'bad key!': 101 } }, clientId: 'c', serviceId: 'voice', requested: { units: 0 } })]);
    const answers = await runBundled(steps);
    expect(answers.map((a) => a.statusCode)).toEqual([200, 201, 200, 201, 200, 200, 200, 400, 400, 400]);
    expect(JSON.parse(answers[3]!.body)).toMatchObject({ sessionId: expect.any(String) });
    // The same invalid bodies, through the handler unbundled (valibot as tests load it).
    const { handler } = await import('../../functions/handlers/reserve.js');
    for (const [i, step] of steps.entries()) {
      if (i < 7) continue;
      const unbundled = await handler(step[1] as any, {} as any) as { statusCode: number; body: string };
      expect(JSON.parse(answers[i]!.body)).toEqual(JSON.parse(unbundled.body));
    }
    expect(JSON.parse(answers[7]!.body).errors.length).toBeGreaterThan(1);
  }, 120_000);

  it('the SDK stand-ins behave as the package code they replace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bundle-'));
    try {
      // Built with the bundles' aliases: these imports resolve to infra/bundle-aliases/.
      await build({
        ...esbuildBuildOptions(''),
        entryPoints: undefined,
        stdin: {
          resolveDir: repoRoot, loader: 'ts', sourcefile: 'stand-ins.ts', contents: `
import { createHash, createHmac } from 'node:crypto';
import { Sha256 } from '@smithy/core/checksum';
import { DynamoDBDocumentClient, GetCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { resolveEndpointDiscoveryConfig, NODE_ENDPOINT_DISCOVERY_CONFIG_OPTIONS } from '@aws-sdk/middleware-endpoint-discovery';
// The package's own function (a relative path: no alias applies), to compare with.
import { resolveEndpointDiscoveryConfig as packageDiscoveryConfig } from './node_modules/@aws-sdk/middleware-endpoint-discovery/dist-es/resolveEndpointDiscoveryConfig.js';
import { resolveRetryConfig } from '@smithy/core/retry';
import { resolveRetryConfig as packageRetryConfig } from './node_modules/@smithy/core/dist-es/submodules/retry/middleware-retry/configurations.js';
import { dateToUtcString, parseEpochTimestamp, parseRfc3339DateTime, parseRfc3339DateTimeWithOffset, parseRfc7231DateTime, v4, toBase64, fromUtf8, Uint8ArrayBlobAdapter } from '@smithy/core/serde';
import * as serdeDates from './node_modules/@smithy/core/dist-es/submodules/serde/date-utils.js';
import { InvokeStore } from '@aws/lambda-invoke-store';
import { InvokeStore as PackageInvokeStore } from './node_modules/@aws/lambda-invoke-store/dist-es/invoke-store.js';
import { marshall, unmarshall } from '@aws-sdk/util-dynamodb';
import * as packageDynamo from './node_modules/@aws-sdk/util-dynamodb/dist-es/index.js';
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const out = {};
const hash = new Sha256(); hash.update('abc'); hash.update(new Uint8Array([1, 2, 3]));
out.sha256 = hex(await hash.digest()) === createHash('sha256').update('abc').update(new Uint8Array([1, 2, 3])).digest('hex');
const hmac = new Sha256('key'); hmac.update('message');
out.hmac = hex(await hmac.digest()) === createHmac('sha256', 'key').update('message').digest('hex');
out.lib = [typeof DynamoDBDocumentClient.from, typeof GetCommand, typeof TransactWriteCommand];
const discovery = async (resolve, input) => {
  const config = resolve({ ...input }, { endpointDiscoveryCommandCtor: GetCommand });
  return [config.endpointDiscoveryCommandCtor === GetCommand, config.isClientEndpointDiscoveryEnabled, await config.endpointDiscoveryEnabled()];
};
out.discovery = [];
for (const input of [{ endpointDiscoveryEnabledProvider: async () => undefined }, { endpointDiscoveryEnabled: true, endpointDiscoveryEnabledProvider: async () => false }]) {
  out.discovery.push(JSON.stringify(await discovery(resolveEndpointDiscoveryConfig, input)) === JSON.stringify(await discovery(packageDiscoveryConfig, input)));
}
out.discovery.push(NODE_ENDPOINT_DISCOVERY_CONFIG_OPTIONS.environmentVariableSelector({ AWS_ENABLE_ENDPOINT_DISCOVERY: 'false' }));
// The retry configuration: the package's for the standard mode, a loud refusal of the adaptive one.
const retry = async (resolve, input) => {
  const config = resolve({ ...input });
  const strategy = await config.retryStrategy();
  return [strategy.constructor.name, strategy.mode, await config.maxAttempts(), await strategy.maxAttemptsProvider?.()];
};
out.retry = [];
for (const input of [{ maxAttempts: 3 }, { retryMode: 'standard' }, { maxAttempts: 5, retryMode: async () => 'standard' }]) {
  out.retry.push(JSON.stringify(await retry(resolveRetryConfig, input)) === JSON.stringify(await retry(packageRetryConfig, input)));
}
out.retry.push(await retry(resolveRetryConfig, { retryMode: 'adaptive' }).then(() => 'retried adaptively', (error) => error.message.includes('not bundled')));
const given = { tag: 'given' };
out.retry.push(await resolveRetryConfig({ retryStrategy: given }).retryStrategy() === given);
// The dates: the package's results for what DynamoDB or EventBridge could send, and a refusal of an invalid date.
const same = (a, b) => { try { return String(a()?.getTime?.() ?? a()) === String(b()?.getTime?.() ?? b()); } catch (error) { try { b(); return 'only the stand-in threw'; } catch { return true; } } };
out.dates = [
  ...[1700000000, '1700000000.123', 0, -1.5, undefined, null, { tag: 1, value: 12.5 }, 'x', Infinity, {}].map((v) => same(() => parseEpochTimestamp(v), () => serdeDates.parseEpochTimestamp(v))),
  ...['2026-11-24T18:30:38Z', '2026-11-24T18:30:38.123+02:00', 'not a date'].map((v) => same(() => parseRfc3339DateTimeWithOffset(v), () => serdeDates.parseRfc3339DateTimeWithOffset(v))),
  ...['2026-11-24T18:30:38Z', '2026-11-24T18:30:38.5Z', 'nope'].map((v) => same(() => parseRfc3339DateTime(v), () => serdeDates.parseRfc3339DateTime(v))),
  ...['Tue, 24 Nov 2026 18:30:38 GMT', 'Sun, 06 Nov 1994 08:49:37 GMT', 'nonsense GMT'].map((v) => same(() => parseRfc7231DateTime(v), () => serdeDates.parseRfc7231DateTime(v))),
  ...[new Date(0), new Date(Date.UTC(2026, 10, 24, 8, 5, 9)), new Date(Date.UTC(1999, 11, 31, 23, 59, 59))].map((d) => dateToUtcString(d) === serdeDates.dateToUtcString(d)),
];
out.serde = [typeof v4(), toBase64(fromUtf8('ok')), typeof Uint8ArrayBlobAdapter.fromString];
// The invocation store: no context before the runtime publishes one (the package then
// publishes its own, empty), the published one after; a loud refusal where the package would
// build the concurrent store.
const traceOf = (s) => [s.getXRayTraceId(), s.getTraceparent(), s.getTracestate(), s.getBaggage()];
out.invokeStore = [typeof globalThis.awslambda, JSON.stringify(traceOf(await InvokeStore.getInstanceAsync())) === JSON.stringify(traceOf(await PackageInvokeStore.getInstanceAsync()))];
out.invokeStore.push(await InvokeStore.getInstanceAsync() === await PackageInvokeStore.getInstanceAsync());
const runtimeStore = { getXRayTraceId: () => 'Root=1-abc', getTraceparent: () => '00-x', getTracestate: () => undefined, getBaggage: () => undefined };
globalThis.awslambda.InvokeStore = runtimeStore;
out.invokeStore.push(await InvokeStore.getInstanceAsync() === runtimeStore);
delete globalThis.awslambda.InvokeStore;
process.env.AWS_LAMBDA_MAX_CONCURRENCY = '4';
out.invokeStore.push(await InvokeStore.getInstanceAsync().then(() => 'built a store', (error) => error.message.includes('not bundled')));
// util-dynamodb: items of every kind the table holds marshal and unmarshal as the package's,
// with the document client's options; what the package refuses, refused too.
const docOptions = { removeUndefinedValues: true, convertClassInstanceToMap: true };
class Row { constructor() { this.seq = 1; this.gone = undefined; } }
const items = [
  { pk: 'ACC#a', sk: 'A', balance: 0, reserved: -5, available: Number.MAX_SAFE_INTEGER, low: -Number.MAX_SAFE_INTEGER, status: 'active', ok: true, no: false, none: null, gone: undefined,
    ops: { 'ses_1': { seq: 2, amt: 10, rid: 'r-1', done: 'closed', o: { n: 'x' } }, constructor: { seq: 1 } }, list: [1, 'two', null, undefined, [3], { x: 4 }], empty: {}, emptyList: [], text: '', unicode: 'é€😀' },
  { pk: 'x', sk: 'y', row: new Row(), tags: new Set(['a', 'b']), counts: new Set([1, 2]) },
];
const deep = (v) => JSON.stringify(v, (_k, x) => (x instanceof Set ? { set: [...x] } : typeof x === 'bigint' ? String(x) + 'n' : x));
out.utilDynamodb = items.map((item) => deep(marshall(item, docOptions)) === deep(packageDynamo.marshall(item, docOptions)));
out.utilDynamodb.push(...items.map((item) => deep(unmarshall(packageDynamo.marshall(item, docOptions))) === deep(packageDynamo.unmarshall(packageDynamo.marshall(item, docOptions)))));
out.utilDynamodb.push(deep(unmarshall({ big: { N: '9007199254740993' }, s: { S: 's' } })) === deep(packageDynamo.unmarshall({ big: { N: '9007199254740993' }, s: { S: 's' } })));
for (const bad of [{ n: 2 ** 53 }, { n: -(2 ** 53) }, { n: NaN }, { n: Infinity }]) out.utilDynamodb.push(same(() => marshall(bad, docOptions), () => packageDynamo.marshall(bad, docOptions)) === true);
out.utilDynamodb.push(same(() => marshall({ u: undefined }), () => packageDynamo.marshall({ u: undefined })) === true);
out.utilDynamodb.push(same(() => marshall({ a: 1 }, { convertEmptyValues: true }), () => 'the package takes it') === 'only the stand-in threw');
console.log(JSON.stringify(out));` },
        outfile: join(dir, 'stand-ins.mjs'),
        logLevel: 'silent',
      });
      const { stdout } = await promisify(execFile)(process.execPath, [join(dir, 'stand-ins.mjs')], { cwd: dir, env: lambdaEnv(dir, 'unused') });
      expect(JSON.parse(stdout.trim().split('\n').pop()!)).toEqual({
        sha256: true, hmac: true, lib: ['function', 'function', 'function'],
        discovery: [true, true, false],
        retry: [true, true, true, true, true],
        dates: Array(22).fill(true),
        serde: ['string', 'b2s=', 'function'],
        invokeStore: ['object', true, true, true, true],
        utilDynamodb: Array(11).fill(true),
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('the LRU stand-in of the bundles (infra/bundle-aliases/lru-cache.ts)', () => {
  it('evicts the least recently used entry, and peek does not refresh', async () => {
    const { default: LRUCache } = await import('../../infra/bundle-aliases/lru-cache.js');
    const cache = new LRUCache<string, number>(2);
    cache.set('a', 1).set('b', 2);
    expect(cache.get('a')).toBe(1); // a is now the most recent
    cache.set('c', 3); // evicts b
    expect([cache.has('a'), cache.has('b'), cache.has('c')]).toEqual([true, false, true]);
    expect(cache.peek('a')).toBe(1);
    cache.set('d', 4); // evicts a: peek did not make it recent, c was set after it was read
    expect([cache.has('a'), cache.has('c'), cache.has('d')]).toEqual([false, true, true]);
    cache.clear();
    expect(cache.has('a')).toBe(false);
  });
});

describe('the SDK clients, told their version (functions/sdk-clients.ts)', () => {
  // The bundles leave out the clients' package.json (infra/bundling.ts): the user agent they
  // are given must be the one they build from it. (The packages' CommonJS builds, which tests
  // load, carry the version inlined at their build, a release behind: the bundles' ESM reads
  // package.json.)
  it('send the user agent their own package.json gives them', async () => {
    const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
    const { EventBridgeClient } = await import('@aws-sdk/client-eventbridge');
    const { userAgentOf, SDK_CLIENT_VERSION } = await import('../../functions/sdk-clients.js');
    const userAgent = async (client: unknown) => (client as { config: { defaultUserAgentProvider: () => Promise<Array<[string, string?]>> } }).config.defaultUserAgentProvider();
    for (const serviceId of ['DynamoDB', 'EventBridge'] as const) {
      const version = JSON.parse(readFileSync(join(repoRoot, 'node_modules', '@aws-sdk', `client-${serviceId.toLowerCase()}`, 'package.json'), 'utf8')).version;
      expect(SDK_CLIENT_VERSION).toBe(version);
      const Client = serviceId === 'DynamoDB' ? DynamoDBClient : EventBridgeClient;
      const byDefault = await userAgent(new Client({ region: 'us-east-1' }));
      const versioned = byDefault.map((pair) => (pair[0] === 'aws-sdk-js' || pair[0] === `api/${serviceId}` ? [pair[0], version] : pair));
      expect(await userAgent(new Client({ region: 'us-east-1', defaultUserAgentProvider: userAgentOf(serviceId) }))).toEqual(versioned);
    }
  });
});
