// How every Lambda is bundled, in one place: the stack hands these to NodejsFunction (which
// runs the local esbuild), and the bundle-size test and `npm run bench:bundles` hand the same
// to esbuild's JS API (esbuildBuildOptions).
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import type { BuildOptions } from 'esbuild';
import { handlerEntry, routes, schedules, type HandlerName, type ScheduledHandlerName } from '../functions/http/routes.js';

export type FunctionName = HandlerName | ScheduledHandlerName;

/** The repository root: handler entries in the route table are relative to it. */
export const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** Absolute path of a handler's source file. */
export const entryOf = (name: FunctionName) => resolve(repoRoot, handlerEntry(name));

/** Every function the stack deploys: each distinct HTTP handler of the route table, then each schedule. */
export const httpFunctionNames: HandlerName[] = [...new Set(routes.map((route) => route.handler))];
export const scheduledFunctionNames: ScheduledHandlerName[] = schedules.map((schedule) => schedule.name);
export const functionNames: FunctionName[] = [...httpFunctionNames, ...scheduledFunctionNames];

/** "sessions-read" -> "SessionsRead": the stem of the function's readable logical ids. */
export const pascalCase = (name: string) =>
  name.split(/[^A-Za-z0-9]+/).filter(Boolean).map((part) => part[0]!.toUpperCase() + part.slice(1)).join('');

/**
 * ESM output needs `require` for the CommonJS dependencies esbuild inlines (the AWS SDK
 * and others call require('node:...') at run time).
 */
export const esmRequireBanner = "import { createRequire } from 'module';const require = createRequire(import.meta.url);";

/**
 * esbuild options shared by the stack and the bundle-size test. The AWS SDK is bundled, not
 * taken from the runtime: the version is then the one the tests ran against, and a bundled,
 * minified client starts faster than the runtime's copy.
 */
export const esbuildOptions = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node22',
  minify: true,
  sourcemap: false,
  mainFields: ['module', 'main'],
  banner: esmRequireBanner,
  // Non-ASCII characters as themselves, not as \uXXXX escapes (Node reads sources as UTF-8),
  // and no end-of-file list of "legal" comments (the SDK's and Powertools' are coverage hints).
  charset: 'utf8',
  legalComments: 'none',
  // Regular expressions with Unicode property escapes (\p{...}) kept as literals: for every
  // engine target (node22 and node24 alike) esbuild writes them as `new RegExp(...)` calls, which
  // tree-shaking must keep even when nothing uses them (valibot's emoji pattern, ~0.5 KB, the
  // only one in the bundles). Node has had them since 10; the pattern is the same either way.
  supported: { 'regexp-unicode-property-escapes': true } as Record<string, boolean>,
  external: [] as string[],
  /**
   * Parts of the AWS SDK a Lambda never runs, swapped for small stand-ins (infra/bundle-aliases/):
   * the default credential chain (a Lambda's credentials are in its environment), event
   * streams (no DynamoDB or EventBridge operation has them) and the endpoint cache's LRU
   * library, ~145 KB less per function; then the pure-JavaScript SHA-256 fallback (Node
   * always has node:crypto's) and lib-dynamodb's paginators (its entry keeps them: the
   * package declares no sideEffects), ~5 KB more; then the endpoint-discovery cache (no
   * DynamoDB command reads it), ~1 KB more; then the adaptive retry mode's rate limiter (the
   * functions retry in the standard mode) and the strict date grammars (no call of theirs
   * answers a date), ~6.5 KB more; then the invocation store (the runtime publishes its own),
   * ~1.8 KB more; then util-dynamodb's converters for Sets, typed arrays and wrapped numbers
   * (the items hold none), ~2.2 KB more. test/infra/bundle-size.test.ts runs bundled functions,
   * and each stand-in, in a fresh Node process.
   */
  alias: {
    '@aws-sdk/credential-provider-node': resolve(repoRoot, 'infra/bundle-aliases/credential-provider-node.ts'),
    '@smithy/core/event-streams': resolve(repoRoot, 'infra/bundle-aliases/event-streams.ts'),
    'mnemonist/lru-cache': resolve(repoRoot, 'infra/bundle-aliases/lru-cache.ts'),
    '@smithy/core/checksum': resolve(repoRoot, 'infra/bundle-aliases/checksum.ts'),
    '@aws-sdk/lib-dynamodb': resolve(repoRoot, 'infra/bundle-aliases/lib-dynamodb.ts'),
    '@aws-sdk/middleware-endpoint-discovery': resolve(repoRoot, 'infra/bundle-aliases/endpoint-discovery.ts'),
    '@smithy/core/retry': resolve(repoRoot, 'infra/bundle-aliases/retry.ts'),
    '@smithy/core/serde': resolve(repoRoot, 'infra/bundle-aliases/serde.ts'),
    '@aws/lambda-invoke-store': resolve(repoRoot, 'infra/bundle-aliases/invoke-store.ts'),
    '@aws-sdk/util-dynamodb': resolve(repoRoot, 'infra/bundle-aliases/util-dynamodb.ts'),
  } as Record<string, string>,
  /**
   * JSON files bundle as nothing. The only ones the functions import are the SDK clients'
   * whole package.json (~2 KB each), read for one field, the version in the user agent, which
   * functions/sdk-clients.ts gives the clients instead; test/infra/bundle-size.test.ts fails
   * if a bundle imports any other JSON.
   */
  loader: { '.json': 'empty' } as Record<string, 'empty'>,
} as const;

/**
 * The same build as esbuild's JS API options (what NodejsFunction passes on its command
 * line for these settings): for the bundle-size test and bench/bundles.ts.
 */
export function esbuildBuildOptions(entry: string): BuildOptions & { entryPoints: string[] } {
  return {
    entryPoints: [entry],
    bundle: esbuildOptions.bundle,
    platform: esbuildOptions.platform,
    format: esbuildOptions.format,
    target: esbuildOptions.target,
    minify: esbuildOptions.minify,
    sourcemap: esbuildOptions.sourcemap,
    mainFields: [...esbuildOptions.mainFields],
    banner: { js: esbuildOptions.banner },
    charset: esbuildOptions.charset,
    legalComments: esbuildOptions.legalComments,
    supported: { ...esbuildOptions.supported },
    external: [...esbuildOptions.external],
    alias: { ...esbuildOptions.alias },
    loader: { ...esbuildOptions.loader },
    outfile: 'index.mjs',
  };
}
