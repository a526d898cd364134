// Stands in for @aws/lambda-invoke-store (0.3) in the Lambda bundles (an esbuild alias in
// infra/bundling.ts). The package keeps a Lambda invocation's context (request id, X-Ray
// trace id, traceparent) for code that runs several invocations at once (Lambda Managed
// Instances, AWS_LAMBDA_MAX_CONCURRENCY); the Node.js runtime publishes its own instance as
// `globalThis.awslambda.InvokeStore`, and the package hands that one out when it is there.
// Powertools imports the package only for that global; the SDK's recursion-detection
// middleware asks it for the trace headers. Here: the runtime's instance when published,
// else a store without context (what the package's single-invocation store holds when
// nothing runs in it), ~1.8 KB less per function. The functions do not run on Managed
// Instances: there, with nothing published, the first call fails loudly.
type Store = {
  getXRayTraceId(): string | undefined; getTraceparent(): string | undefined;
  getTracestate(): string | undefined; getBaggage(): string | undefined;
};
type WithRuntimeStore = { awslambda?: { InvokeStore?: Store } };

// As the package: the runtime's namespace exists unless told not to create it.
if (!['true', '1'].includes(process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA ?? '')) (globalThis as WithRuntimeStore).awslambda ??= {};

const noContext: Store = { getXRayTraceId: () => undefined, getTraceparent: () => undefined, getTracestate: () => undefined, getBaggage: () => undefined };

export const InvokeStore = {
  async getInstanceAsync(): Promise<Store> {
    const published = (globalThis as WithRuntimeStore).awslambda?.InvokeStore;
    if (published) return published;
    if ('AWS_LAMBDA_MAX_CONCURRENCY' in process.env) throw new Error('the concurrent invoke store is not bundled (infra/bundle-aliases/invoke-store.ts)');
    return noContext;
  },
};
