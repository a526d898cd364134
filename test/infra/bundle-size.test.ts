// Bundle size per function, built the way the stack builds it (infra/bundling.ts), in
// memory. A loose guard only: it fails on a blow-up (an accidental heavy dependency, or the
// full zod instead of zod/mini), not on the growth every dependency bump brings. Figures,
// load times and the targets are `npm run bench:bundles`, not a test.
import { describe, expect, it } from 'vitest';
import { build, type Metafile } from 'esbuild';
import { entryOf, esbuildBuildOptions, functionNames } from '../../infra/bundling.js';

/** Every function is ~360-490 KB today, of which the DynamoDB client alone is ~330 KB. */
const LIMIT_BYTES = 768 * 1024;
/** zod/mini with the schemas a handler uses is ~10-30 KB; the full zod would be ~450 KB. */
const ZOD_LIMIT_BYTES = 96 * 1024;
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
  it(`every function bundles (minified ESM, AWS SDK included) under ${kb(LIMIT_BYTES)}, zod under ${kb(ZOD_LIMIT_BYTES)}`, async () => {
    const rows: Array<{ function: string; minified: string; bytes: number; zod: number; largest: string }> = [];
    for (const name of functionNames) {
      const result = await build({ ...esbuildBuildOptions(entryOf(name)), write: false, metafile: true, logLevel: 'silent' });
      const bytes = result.outputFiles.reduce((sum, file) => sum + file.contents.byteLength, 0);
      const packages = byPackage(result.metafile);
      const largest = packages.slice(0, 4).map(([pkg, size]) => `${pkg} ${kb(size)}`).join(', ');
      rows.push({ function: name, minified: kb(bytes), bytes, zod: packages.find(([pkg]) => pkg === 'zod')?.[1] ?? 0, largest });
    }
    console.log(`\nbundle sizes (limit ${kb(LIMIT_BYTES)}; figures and load times: npm run bench:bundles):`);
    console.table(rows.map(({ bytes: _bytes, zod: _zod, ...row }) => row));
    for (const row of rows) {
      expect({ function: row.function, tooLarge: row.bytes >= LIMIT_BYTES }).toEqual({ function: row.function, tooLarge: false });
      expect({ function: row.function, zodTooLarge: row.zod >= ZOD_LIMIT_BYTES }).toEqual({ function: row.function, zodTooLarge: false });
    }
  }, 120_000);
});
