// Bundle size per function, built the way the stack builds it (infra/bundling.ts), in
// memory. Prints a table; fails only on a blow-up (an accidental heavy dependency), since
// sizes move with every dependency bump. Cold start grows with the bundle.
import { describe, expect, it } from 'vitest';
import { build, type Metafile } from 'esbuild';
import { entryOf, esbuildOptions, functionNames } from '../../infra/bundling.js';

const LIMIT_BYTES = 1.5 * 1024 * 1024;
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
  it(`every function bundles (minified ESM, AWS SDK included) under ${kb(LIMIT_BYTES)}`, async () => {
    const rows: Array<{ function: string; minified: string; bytes: number; largest: string }> = [];
    for (const name of functionNames) {
      const result = await build({
        entryPoints: [entryOf(name)],
        bundle: esbuildOptions.bundle,
        platform: esbuildOptions.platform,
        format: esbuildOptions.format,
        target: esbuildOptions.target,
        minify: esbuildOptions.minify,
        sourcemap: esbuildOptions.sourcemap,
        mainFields: [...esbuildOptions.mainFields],
        banner: { js: esbuildOptions.banner },
        external: [...esbuildOptions.external],
        outfile: 'index.mjs',
        write: false,
        metafile: true,
        logLevel: 'silent',
      });
      const bytes = result.outputFiles.reduce((sum, file) => sum + file.contents.byteLength, 0);
      const largest = byPackage(result.metafile).slice(0, 4).map(([pkg, size]) => `${pkg} ${kb(size)}`).join(', ');
      rows.push({ function: name, minified: kb(bytes), bytes, largest });
    }
    console.log(`\nbundle sizes (limit ${kb(LIMIT_BYTES)}):`);
    console.table(rows.map(({ bytes: _bytes, ...row }) => row));
    for (const row of rows) expect({ function: row.function, tooLarge: row.bytes >= LIMIT_BYTES }).toEqual({ function: row.function, tooLarge: false });
  }, 120_000);
});
