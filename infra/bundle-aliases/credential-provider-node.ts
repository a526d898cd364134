// Stands in for @aws-sdk/credential-provider-node in the Lambda bundles (an esbuild alias in
// infra/bundling.ts). Lambda hands every function its role's credentials in the environment
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), and so do `sam local` and
// LocalStack; the default chain's other sources (profiles, SSO, IMDS, web identity, login)
// never answer there and weigh about 100 KB of every bundle, with their nested STS and SSO
// clients. Local runs (`npm start`, tests) are not bundled and keep the full chain.
import { fromEnv } from '@aws-sdk/credential-provider-env';

/** The SDK clients' `credentialDefaultProvider`: the environment's credentials only. */
export const defaultProvider = (init: Parameters<typeof fromEnv>[0] = {}) => fromEnv(init);
