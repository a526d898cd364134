// What the AWS SDK clients are told of themselves. The Lambda bundles leave out the clients'
// package.json files (infra/bundling.ts: ~2 KB each, read for one field), so each client is
// given the user agent it would build from them; test/infra/bundle-size.test.ts checks the
// version against the installed packages (package.json pins them).
import { createDefaultUserAgentProvider } from '@aws-sdk/core/client';

export const SDK_CLIENT_VERSION = '3.1162.0';

/** The user agent the client of `serviceId` builds by default, with the version it reads from its package.json. */
export const userAgentOf = (serviceId: 'DynamoDB' | 'EventBridge') =>
  createDefaultUserAgentProvider({ serviceId, clientVersion: SDK_CLIENT_VERSION });
