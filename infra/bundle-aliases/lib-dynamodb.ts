// Stands in for @aws-sdk/lib-dynamodb's entry in the Lambda bundles (an esbuild alias in
// infra/bundling.ts): the same document client and commands, from the package's own files,
// without its paginators. The package declares no `sideEffects: false`, so its entry's
// `export const paginateQuery = createPaginator(...)` (and paginateScan) are kept in every
// bundle, and with them the paginator runtime and the Scan commands nothing here sends
// (~1.5 KB). Nothing is reimplemented: every class is the package's. An SDK upgrade that
// moves these files fails the build loudly. Local runs and tests import the package itself.
// (The dist-es files carry no declarations; the bundles need none.)
// @ts-ignore
export * from '../../node_modules/@aws-sdk/lib-dynamodb/dist-es/commands/index.js';
// @ts-ignore
export * from '../../node_modules/@aws-sdk/lib-dynamodb/dist-es/DynamoDBDocumentClient.js';
// Not NumberValue: nothing here sends numbers past 2^53-1 (util-dynamodb.ts refuses them).
