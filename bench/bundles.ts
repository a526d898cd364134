// Bundle size and module load time of every Lambda, built exactly as the stack builds them
// (infra/bundling.ts), next to a baseline bundle that holds only the DynamoDB client (built
// the same way), and the same client as the SDK bundles without our stand-ins.
//
//   npm run bench:bundles
//
// Load time: each bundle is written to a temp dir and imported by a fresh `node` process,
// which times `await import(file)` with performance.now() and reports it; the figure is the
// median of BENCH_BUNDLE_LOADS (default 15) such cold loads, after one discarded warm-up
// round (file cache). The order of the bundles is shuffled every round, so drift on the
// machine favours none. This is module load only (parse + top-level code), not a Lambda
// cold start (no runtime init, no network), on this machine's Node, not Lambda's Node 22 on
// arm64: compare the ratios, not the milliseconds.
//
// Knobs: BENCH_BUNDLE_LOADS (cold loads per bundle), BENCH_BUNDLE_KEEP=1 (keep the temp dir).
// Progress goes to stderr; the tables go to stdout. Figures, not a test: the test suite
// keeps only a loose size guard (test/infra/bundle-size.test.ts).
import { build, type Metafile } from 'esbuild';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { entryOf, esbuildBuildOptions, functionNames, repoRoot } from '../infra/bundling.js';

const LOADS = Math.max(1, Math.floor(Number(process.env.BENCH_BUNDLE_LOADS) || 15));
const SIZE_TARGET_KB = 250;
const LOAD_TARGET_RATIO = 1.2;
const BASELINE = 'baseline: DynamoDB client only';
/** The same client without the stand-ins of infra/bundle-aliases/: what the SDK bundles to as published. */
const STOCK_BASELINE = 'DynamoDB client, stock SDK';

/** What every function needs at least: the document client, created at module scope as the handlers' store does. */
const baselineSource = `
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
export const client = DynamoDBDocumentClient.from(new DynamoDBClient({ region: process.env.AWS_REGION, maxAttempts: 3 }), { marshallOptions: { removeUndefinedValues: true } });
`;

/** Times one import in the child: performance.now() around `await import(file)`. */
const loaderSource = `
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
const url = pathToFileURL(process.argv[2]).href;
const t0 = performance.now();
await import(url);
const ms = performance.now() - t0;
process.stdout.write(JSON.stringify({ ms }) + '\\n');
`;

/** The environment a function finds in Lambda, as far as module load cares; nothing from this shell (no NODE_OPTIONS, no tsx). */
const childEnv = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  AWS_REGION: 'us-east-1',
  TABLE_NAME: 'charging',
  POWERTOOLS_SERVICE_NAME: 'charging-bench',
  POWERTOOLS_METRICS_NAMESPACE: 'Charging',
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
};

interface Bundle {
  name: string;
  file: string;
  bytes: number;
  gzipBytes: number;
  metafile: Metafile;
  loads: number[];
}

// ------------------------------------------------------------------------------ helpers

const kb = (bytes: number) => (bytes / 1024).toFixed(1);
const pad = (s: string, width: number) => (s.length >= width ? s : ' '.repeat(width - s.length) + s);
const padEnd = (s: string, width: number) => (s.length >= width ? s : s + ' '.repeat(width - s.length));

function table(headers: string[], rows: string[][], leftColumns = 1): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < leftColumns ? padEnd(c, widths[i]!) : pad(c, widths[i]!))).join('  ').trimEnd();
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Nearest-rank percentile. */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Median as usual: the mean of the two middle values for an even count. */
function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A small seeded PRNG (mulberry32): the shuffles are the same from run to run. */
function prng(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

const packageOf = (input: string) => /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(input)?.[1] ?? '(own code)';

/** Bytes in the output per npm package (or "(own code)"), largest first. */
function byPackage(metafile: Metafile): Array<[string, number]> {
  const totals = new Map<string, number>();
  for (const output of Object.values(metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
      totals.set(packageOf(input), (totals.get(packageOf(input)) ?? 0) + bytesInOutput);
    }
  }
  return [...totals].sort((a, b) => b[1] - a[1]);
}

/**
 * The shortest import chain from the entry to the first module of `pkg` that contributes
 * bytes to the output: "functions/handlers/health.ts > functions/http/handler.ts > ...".
 */
function chainTo(metafile: Metafile, pkg: string): string | undefined {
  const output = Object.values(metafile.outputs)[0]!;
  const entry = output.entryPoint ?? Object.keys(metafile.inputs)[0]!;
  const previous = new Map<string, string | null>([[entry, null]]);
  const queue = [entry];
  while (queue.length) {
    const current = queue.shift()!;
    if (packageOf(current) === pkg && (output.inputs[current]?.bytesInOutput ?? 0) > 0) {
      const chain: string[] = [];
      for (let at: string | null = current; at; at = previous.get(at) ?? null) chain.unshift(at);
      // Inside node_modules only the first module of the package is of interest.
      const cut = chain.findIndex((step) => step.includes('node_modules/'));
      return chain.slice(0, cut < 0 ? undefined : cut + 1).map((step) => step.replace(/^.*node_modules\//, '')).join(' > ');
    }
    for (const imported of metafile.inputs[current]?.imports ?? []) {
      if (imported.external || previous.has(imported.path)) continue;
      previous.set(imported.path, current);
      queue.push(imported.path);
    }
  }
  return undefined;
}

function loadOnce(loader: string, file: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [loader, file], { env: childEnv, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error) return reject(new Error(`loading ${file} failed: ${error.message}\n${stderr}`));
      try {
        resolve(JSON.parse(stdout.trim().split('\n').at(-1)!).ms);
      } catch {
        reject(new Error(`loading ${file}: no timing on stdout: ${stdout}\n${stderr}`));
      }
    });
  });
}

// --------------------------------------------------------------------------------- build

async function buildBundle(dir: string, name: string, source: { entry: string } | { contents: string }, stock = false): Promise<Bundle> {
  const { entryPoints, ...options } = esbuildBuildOptions('entry' in source ? source.entry : '');
  const result = await build({
    ...options,
    ...(stock ? { alias: {} } : {}),
    ...('entry' in source
      ? { entryPoints }
      : { stdin: { contents: source.contents, resolveDir: repoRoot, sourcefile: 'baseline.ts', loader: 'ts' as const } }),
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const code = result.outputFiles.find((file) => file.path.endsWith('.mjs'))!.contents;
  const folder = join(dir, name.replace(/[^A-Za-z0-9-]+/g, '_'));
  mkdirSync(folder, { recursive: true });
  const file = join(folder, 'index.mjs');
  writeFileSync(file, code);
  return { name, file, bytes: code.byteLength, gzipBytes: gzipSync(code, { level: 9 }).byteLength, metafile: result.metafile, loads: [] };
}

// ---------------------------------------------------------------------------------- main

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'charging-bundles-'));
  try {
    process.stderr.write(`building ${functionNames.length} functions and the baseline into ${dir} ...\n`);
    const baseline = await buildBundle(dir, BASELINE, { contents: baselineSource });
    const stock = await buildBundle(dir, STOCK_BASELINE, { contents: baselineSource }, true);
    const bundles: Bundle[] = [];
    for (const name of functionNames) bundles.push(await buildBundle(dir, name, { entry: entryOf(name) }));
    const all = [baseline, stock, ...bundles];
    const loader = join(dir, 'load.mjs');
    writeFileSync(loader, loaderSource);

    const random = prng(20_251_122);
    for (let round = 0; round <= LOADS; round++) {
      process.stderr.write(`\r${round === 0 ? 'warm-up round' : `cold loads: round ${round}/${LOADS}`}   `);
      for (const bundle of shuffled(all, random)) {
        const ms = await loadOnce(loader, bundle.file);
        if (round > 0) bundle.loads.push(ms); // round 0 only warms the file cache
      }
    }
    process.stderr.write('\n\n');

    const baseMs = median(baseline.loads);
    const stockMs = median(stock.loads);
    const row = (bundle: Bundle, isBaseline = false) => {
      const ms = median(bundle.loads);
      const ratio = ms / baseMs;
      return [
        bundle.name, kb(bundle.bytes), kb(bundle.gzipBytes), ms.toFixed(1),
        `${percentile(bundle.loads, 25).toFixed(1)}-${percentile(bundle.loads, 75).toFixed(1)}`, `${ratio.toFixed(2)}x`, `${(ms / stockMs).toFixed(2)}x`,
        isBaseline ? '-' : bundle.bytes <= SIZE_TARGET_KB * 1024 ? 'PASS' : 'MISS',
        isBaseline ? '-' : ratio <= LOAD_TARGET_RATIO ? 'PASS' : 'MISS',
      ];
    };
    console.log(`Lambda bundles: minified ESM as the stack builds them (infra/bundling.ts), AWS SDK bundled.`);
    console.log(`Load = median of ${LOADS} cold loads, each a fresh \`node\` (${process.version}, ${cpus()[0]?.model ?? 'cpu'}) timing \`await import(bundle)\`.\n`);
    console.log(table(
      ['function', 'minified KB', 'gzip KB', 'load ms', 'load p25-p75', 'x baseline', 'x stock client', `size <= ${SIZE_TARGET_KB} KB`, `load <= ${LOAD_TARGET_RATIO}x`],
      [row(baseline, true), row(stock, true), ...bundles.map((bundle) => row(bundle))],
    ));
    const passSize = bundles.filter((b) => b.bytes <= SIZE_TARGET_KB * 1024).length;
    const passLoad = bundles.filter((b) => median(b.loads) / baseMs <= LOAD_TARGET_RATIO).length;
    console.log(`\ntargets: size <= ${SIZE_TARGET_KB} KB: ${passSize}/${bundles.length} PASS; load <= ${LOAD_TARGET_RATIO}x baseline: ${passLoad}/${bundles.length} PASS.`);
    console.log(`note: the DynamoDB client alone (the baseline, with the stand-ins of infra/bundle-aliases/) is ${kb(baseline.bytes)} KB minified,`
      + ` leaving ${(SIZE_TARGET_KB - baseline.bytes / 1024).toFixed(0)} KB for our code, valibot and Powertools; the baseline shrank with the stand-ins too, so "x baseline" compares like with like.`
      + ` "x stock client": against the DynamoDB client as the SDK bundles without them (${kb(stock.bytes)} KB), the baseline before the stand-ins.`);

    console.log('\nWhat is in each bundle (KB in the minified output, largest first):\n');
    console.log(table(['function', 'largest packages'], all.map((bundle) => [
      bundle.name, byPackage(bundle.metafile).slice(0, 6).map(([pkg, bytes]) => `${pkg} ${kb(bytes)}`).join(', '),
    ]), 2));

    // How the heavy or optional packages get into each bundle: the shortest import chain.
    const watched = ['valibot', '@aws-sdk/client-dynamodb', '@aws-sdk/client-eventbridge', '@aws-lambda-powertools/logger', '@aws-lambda-powertools/metrics', '@middy/core'];
    console.log('\nHow packages get in (shortest import chain, in the smallest bundle that has them; "in" = functions holding it):\n');
    const rows: string[][] = [];
    for (const pkg of watched) {
      const holders = bundles.filter((b) => byPackage(b.metafile).some(([p, bytes]) => p === pkg && bytes > 0));
      if (!holders.length) continue;
      const smallest = [...holders].sort((a, b) => a.bytes - b.bytes)[0]!;
      const sizes = holders.map((b) => byPackage(b.metafile).find(([p]) => p === pkg)![1]);
      const [least, most] = [Math.min(...sizes), Math.max(...sizes)];
      rows.push([pkg, kb(least) === kb(most) ? `${kb(most)} KB` : `${kb(least)}-${kb(most)} KB`, holders.length === bundles.length ? 'all' : holders.map((b) => b.name).join(' '), chainTo(smallest.metafile, pkg) ?? '?']);
    }
    console.log(table(['package', 'size', 'in', 'import chain'], rows, 4));
  } finally {
    if (process.env.BENCH_BUNDLE_KEEP === '1') process.stderr.write(`bundles kept in ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

await main();
