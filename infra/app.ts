// The CDK app: one stack, ChargingStack. `npm run synth`, `npm run deploy`.
//   -c deletionProtection=false   table deletable and destroyed with the stack (test stages)
//   -c tableName=charging-prod    fixed physical table name (default: generated)
import { App } from 'aws-cdk-lib';
import { ChargingStack } from './stack.js';

const app = new App();

const flag = (value: unknown, fallback: boolean) =>
  value === undefined ? fallback : !(value === false || String(value).toLowerCase() === 'false');
const text = (value: unknown) => (value === undefined || value === '' ? undefined : String(value));

new ChargingStack(app, 'ChargingStack', {
  description: 'Serverless online charging system: HTTP API, Lambda handlers, one DynamoDB table',
  deletionProtection: flag(app.node.tryGetContext('deletionProtection'), true),
  tableName: text(app.node.tryGetContext('tableName')),
});

app.synth();
