// Stands in for @smithy/core/retry in the Lambda bundles (an esbuild alias in
// infra/bundling.ts): everything the package's entry exports, from the package's own files,
// but `resolveRetryConfig`, whose adaptive branch brings the client-side rate limiter
// (AdaptiveRetryStrategy and DefaultRateLimiter, ~3.3 KB) into every bundle. The functions
// run the SDK's standard retry mode (3 attempts, functions/store/db.ts); the adaptive mode is
// chosen only by AWS_RETRY_MODE=adaptive or a profile's retry_mode, which the stack never
// sets, and here it fails the first call loudly instead of retrying differently.
// This is the package's function (@smithy/core 3.41, retry/middleware-retry/configurations.js)
// without that branch. Local runs and tests import the package itself.
// (The dist-es files carry no declarations; the bundles need none.)
// @ts-ignore
export * from '../../node_modules/@smithy/core/dist-es/submodules/retry/index.js';
// @ts-ignore
import { DEFAULT_MAX_ATTEMPTS, RETRY_MODES, Retry, StandardRetryStrategy } from '../../node_modules/@smithy/core/dist-es/submodules/retry/index.js';
import { normalizeProvider } from '@smithy/core/client';

type Provider<T> = () => Promise<T>;
interface RetryInput { retryStrategy?: unknown; retryMode?: string | Provider<string>; maxAttempts?: number | Provider<number> }

/** An explicit export: it takes precedence over the `export *` above. */
export const resolveRetryConfig = <T extends RetryInput>(input: T, defaults?: { defaultMaxAttempts?: number; defaultBaseDelay?: number }) => {
  const { retryStrategy, retryMode } = input;
  const { defaultMaxAttempts = DEFAULT_MAX_ATTEMPTS, defaultBaseDelay = Retry.delay() } = defaults ?? {};
  const maxAttemptsProvider = normalizeProvider(input.maxAttempts ?? defaultMaxAttempts) as Provider<number>;
  let controller: Promise<unknown> | undefined = retryStrategy ? Promise.resolve(retryStrategy) : undefined;
  const getDefault = async () => {
    const maxAttempts = await maxAttemptsProvider();
    if ((await (normalizeProvider(retryMode as string) as Provider<string | undefined>)()) === RETRY_MODES.ADAPTIVE) {
      throw new Error('the adaptive retry mode is not bundled (infra/bundle-aliases/retry.ts): unset AWS_RETRY_MODE, or set it to standard');
    }
    return new StandardRetryStrategy({ maxAttempts, baseDelay: defaultBaseDelay });
  };
  return Object.assign(input, { maxAttempts: maxAttemptsProvider, retryStrategy: () => (controller ??= getDefault()) });
};
