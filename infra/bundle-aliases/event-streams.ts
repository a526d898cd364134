// Stands in for @smithy/core/event-streams in the Lambda bundles (an esbuild alias in
// infra/bundling.ts). The SDK's protocol code imports it lazily, only for operations with
// event-stream members, and DynamoDB and EventBridge have none: ~20 KB of every bundle that
// never runs. Should that change with an SDK upgrade, the import fails loudly, not silently.
const missing = () => {
  throw new Error('@smithy/core/event-streams is not bundled (infra/bundle-aliases/event-streams.ts): no DynamoDB or EventBridge operation uses event streams');
};
export const EventStreamSerde = missing;
export const eventStreamSerdeProvider = missing;
