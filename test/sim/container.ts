// One simulated Lambda container (a worker thread): its own module instances of the
// handlers and the store, one request at a time, as AWS runs them.
import { parentPort, workerData } from 'node:worker_threads';
import { quietLogs, runHttp, runSweep, runTrigger, simulatedStore, type RuntimeOptions } from './runtime.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
const options = workerData as RuntimeOptions;
process.env.TABLE_NAME = options.tableName;
const { store, db } = simulatedStore(options);
quietLogs();

parentPort!.on('message', async (message: Record<string, any>) => {
  let reply: unknown;
  switch (message.type) {
    case 'http':
      reply = await runHttp(store, message.method, message.path, message.headers, message.body, message.plan, message.label);
      break;
    case 'sweep':
      reply = await runSweep(store, message.plan);
      break;
    case 'trigger':
      reply = await runTrigger(store, message.plan);
      break;
    case 'idle':
      await db.idle();
      reply = true;
      break;
    case 'stats':
      reply = { calls: Object.fromEntries(db.calls), injected: Object.fromEntries(db.injected) };
      break;
  }
  parentPort!.postMessage({ id: message.id, reply });
});
parentPort!.postMessage({ ready: true });
