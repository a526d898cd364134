// Stands in for @aws-sdk/middleware-endpoint-discovery in the Lambda bundles (an esbuild alias
// in infra/bundling.ts). The DynamoDB client (3.1162) still resolves the endpoint-discovery
// settings and builds an endpoint cache (with mnemonist's LRU) for them, but none of its
// commands adds the discovery middleware, the one reader of that cache: the cache is built
// and never used (~1 KB). Here the same settings, without the cache; the settings' loader is
// the package's own. Should an SDK upgrade make a command use the discovery plugin, its import
// from here fails the build loudly.
// (The dist-es files carry no declarations; the bundles need none.)
// @ts-ignore
export { NODE_ENDPOINT_DISCOVERY_CONFIG_OPTIONS } from '../../node_modules/@aws-sdk/middleware-endpoint-discovery/dist-es/configurations.js';

interface EndpointDiscoveryInput {
  endpointDiscoveryEnabled?: boolean;
  endpointDiscoveryEnabledProvider: () => Promise<boolean | undefined>;
}

/** The package's resolveEndpointDiscoveryConfig, without `endpointCache` (nothing reads it). */
export const resolveEndpointDiscoveryConfig = <T extends EndpointDiscoveryInput>(input: T, { endpointDiscoveryCommandCtor }: { endpointDiscoveryCommandCtor: unknown }) => {
  const { endpointDiscoveryEnabled, endpointDiscoveryEnabledProvider } = input;
  return Object.assign(input, {
    endpointDiscoveryCommandCtor,
    endpointDiscoveryEnabled: endpointDiscoveryEnabled !== undefined ? () => Promise.resolve(endpointDiscoveryEnabled) : endpointDiscoveryEnabledProvider,
    isClientEndpointDiscoveryEnabled: endpointDiscoveryEnabled !== undefined,
  });
};
