// The CDK app: one stack, ChargingStack. `npm run synth`, `npm run deploy`; see docs/deploy.md.
//   -c deletionProtection=false   table deletable and destroyed with the stack (test stages)
//   -c tableName=charging-prod    fixed physical table name (default: generated)
//   -c localEndpoints=true        functions declare AWS_ENDPOINT_URL_DYNAMODB (empty) so that
//                                 `sam local invoke --env-vars` can set it (SAM overrides only
//                                 variables the template declares)
//   -c httpApi=false              no API Gateway v2 (LocalStack's free edition has none)
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
  localEndpoints: flag(app.node.tryGetContext('localEndpoints'), false),
  httpApi: flag(app.node.tryGetContext('httpApi'), true),
});

app.synth();
