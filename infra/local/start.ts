// npm start: the charging system on this machine. Ctrl-C stops DynamoDB Local cleanly.
import { resolve } from 'node:path';

// The SDK warns about Node 20 on every start; the Lambda runtime is Node 22.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { startLocalRuntime } from './runtime.js';

const inMemory = process.argv.includes('--in-memory');
const dataDir = resolve(process.env.DATA_DIR ?? '.data/dynamodb');
const runtime = await startLocalRuntime({
  port: Number(process.env.PORT ?? 3000),
  dataDir: inMemory ? undefined : dataDir,
  timers: true,
});

console.log(`Charging API  ${runtime.url}`);
console.log(`Token         ${runtime.token}   (send: Authorization: Bearer ${runtime.token})`);
console.log(`DynamoDB      ${runtime.dynamodb?.endpoint}  table ${runtime.store.tableName}  ${inMemory ? '(in memory)' : `(data in ${dataDir})`}`);
console.log('Schedules     interim-sweep and recharge-trigger every minute, notification-relay every second; run one now with POST /local/schedules/<name>/run');
console.log('Ctrl-C stops everything.');

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, async () => {
    if (stopping) return;
    stopping = true;
    console.log('\nstopping…');
    await runtime.stop();
    process.exit(0);
  });
}
