// The synthesized ChargingStack: table, functions, API, schedules, least privilege, alarms.
// Synthesized once (bundling every function with esbuild takes a few seconds).
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { ChargingStack, sweepBacklogMetric, tableActions } from '../../infra/stack.js';
import { functionNames, pascalCase, repoRoot, scheduledFunctionNames, type FunctionName } from '../../infra/bundling.js';
import { routes, schedules } from '../../functions/http/routes.js';
import { tableDefinition, TTL_ATTRIBUTE } from '../../functions/store/table.js';

// The feature flags of cdk.json, so the tests see the template `cdk synth` produces.
const cdkContext = JSON.parse(readFileSync(join(repoRoot, 'cdk.json'), 'utf8')).context as Record<string, unknown>;

type Resource = { Type: string; Properties: Record<string, any>; DeletionPolicy?: string; UpdateReplacePolicy?: string };

let template: Template;
let resources: Record<string, Resource>;

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const functionId = (name: FunctionName) => `${pascalCase(name)}Function`;
const tableArn = { 'Fn::GetAtt': ['ChargingTable', 'Arn'] };
const indexArn = (index: string) => ({ 'Fn::Join': ['', [tableArn, `/index/${index}`]] });
const streamArn = { 'Fn::GetAtt': ['ChargingTable', 'StreamArn'] };

/** Every statement of the policies attached to a function's role. */
function statementsOf(name: FunctionName): Array<{ Action: string | string[]; Resource: unknown; Effect: string }> {
  const roleId = resources[functionId(name)]!.Properties.Role['Fn::GetAtt'][0];
  return ofType('AWS::IAM::Policy')
    .filter(([, policy]) => policy.Properties.Roles.some((role: any) => role.Ref === roleId))
    .flatMap(([, policy]) => policy.Properties.PolicyDocument.Statement);
}
const actionsOf = (statement: { Action: string | string[] }) => [statement.Action].flat();

/** "GetItem" / "Query@due" per statement resource, as tableActions writes them. */
function dynamoGrants(name: FunctionName): string[] {
  return statementsOf(name).flatMap((statement) => actionsOf(statement)
    .filter((action) => action.startsWith('dynamodb:'))
    .map((action) => {
      const bare = action.slice('dynamodb:'.length);
      if (JSON.stringify(statement.Resource) === JSON.stringify(tableArn)) return bare;
      if (JSON.stringify(statement.Resource) === JSON.stringify(indexArn('due'))) return `${bare}@due`;
      if (JSON.stringify(statement.Resource) === JSON.stringify(streamArn)) return `${bare}@stream`;
      return `${bare}@${JSON.stringify(statement.Resource)}`;
    })).sort();
}

beforeAll(() => {
  const app = new App({ context: cdkContext });
  const stack = new ChargingStack(app, 'ChargingStack');
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources;
}, 240_000);

describe('table', () => {
  const definition = tableDefinition('unused');

  it('has the keys, attributes and due index of functions/store/table.ts', () => {
    const table = resources.ChargingTable!;
    expect(table.Type).toBe('AWS::DynamoDB::Table');
    expect(table.Properties.KeySchema).toEqual(definition.KeySchema);
    expect(table.Properties.AttributeDefinitions).toEqual(expect.arrayContaining(definition.AttributeDefinitions!));
    expect(table.Properties.AttributeDefinitions).toHaveLength(definition.AttributeDefinitions!.length);
    expect(table.Properties.GlobalSecondaryIndexes).toEqual(definition.GlobalSecondaryIndexes);
    expect(table.Properties.GlobalSecondaryIndexes[0]).toMatchObject({ IndexName: 'due', Projection: { ProjectionType: 'KEYS_ONLY' } });
    expect(ofType('AWS::DynamoDB::Table')).toHaveLength(1);
  });

  it('is on-demand, with point-in-time recovery, TTL and deletion protection', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      Properties: Match.objectLike({
        BillingMode: 'PAY_PER_REQUEST',
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        TimeToLiveSpecification: { AttributeName: TTL_ATTRIBUTE, Enabled: true },
        DeletionProtectionEnabled: true,
      }),
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
    });
    expect(resources.ChargingTable!.Properties.TableName).toBeUndefined();
  });

  it('without deletion protection: deletable and destroyed with the stack; name as given', () => {
    // Bundling skipped: only the table matters here.
    const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
    const stack = new ChargingStack(app, 'Unprotected', { deletionProtection: false, tableName: 'charging-test' });
    Template.fromStack(stack).hasResource('AWS::DynamoDB::Table', {
      Properties: Match.objectLike({ DeletionProtectionEnabled: false, TableName: 'charging-test' }),
      DeletionPolicy: 'Delete',
    });
  });
});

describe('functions', () => {
  it('one per handler, with readable logical ids', () => {
    expect(ofType('AWS::Lambda::Function').map(([id]) => id).sort())
      .toEqual(functionNames.map(functionId).sort());
    expect(functionId('reserve')).toBe('ReserveFunction');
    expect(functionId('sessions-read')).toBe('SessionsReadFunction');
    expect(functionId('interim-sweep')).toBe('InterimSweepFunction');
  });

  it.each(functionNames)('%s: nodejs22.x on arm64, bundled ESM, environment, timeout', (name) => {
    const fn = resources[functionId(name)]!;
    const scheduled = (scheduledFunctionNames as string[]).includes(name);
    expect(fn.Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      MemorySize: 512,
      Timeout: scheduled ? 60 : 10,
      Environment: { Variables: {
        TABLE_NAME: { Ref: 'ChargingTable' },
        POWERTOOLS_SERVICE_NAME: `charging-${name}`,
        POWERTOOLS_METRICS_NAMESPACE: 'Charging',
      } },
      LoggingConfig: { LogGroup: { Ref: `${functionId(name)}Logs` } },
    });
    const variables = fn.Properties.Environment.Variables;
    expect(variables).not.toHaveProperty('CHARGING_API_TOKEN'); // IAM guards the API in AWS
    expect('EVENT_BUS_NAME' in variables).toBe(name === 'notification-relay');
    expect(variables.RELAY_BACKSTOP_AFTER_SECONDS).toBe(name === 'notification-relay' ? '60' : undefined);
    expect(resources[`${functionId(name)}Logs`]).toMatchObject({ Type: 'AWS::Logs::LogGroup', Properties: { RetentionInDays: 30 }, DeletionPolicy: 'Delete' });
  });
});

describe('local variants (docs/deploy.md)', () => {
  // Bundling skipped: only the template matters here.
  const synth = (props: ConstructorParameters<typeof ChargingStack>[2]) => {
    const app = new App({ context: { ...cdkContext, 'aws:cdk:bundling-stacks': [] } });
    return Template.fromStack(new ChargingStack(app, 'Variant', props)).toJSON().Resources as Record<string, Resource>;
  };

  it('the default template declares no endpoint variables', () => {
    for (const name of functionNames) {
      const variables = resources[functionId(name)]!.Properties.Environment.Variables;
      expect(Object.keys(variables).filter((v) => v.startsWith('AWS_ENDPOINT_URL'))).toEqual([]);
    }
  });

  it('localEndpoints: every function declares AWS_ENDPOINT_URL_DYNAMODB empty (SAM --env-vars can set it), publishers _EVENTBRIDGE too', () => {
    const variant = synth({ localEndpoints: true });
    for (const name of functionNames) {
      const variables = variant[functionId(name)]!.Properties.Environment.Variables;
      expect(variables.AWS_ENDPOINT_URL_DYNAMODB).toBe('');
      expect('AWS_ENDPOINT_URL_EVENTBRIDGE' in variables).toBe(name === 'notification-relay');
      expect(variables.TABLE_NAME).toEqual({ Ref: 'ChargingTable' });
    }
  });

  it('httpApi false: no API Gateway resources, the same functions, table and schedules', () => {
    const variant = synth({ httpApi: false });
    const types = new Set(Object.values(variant).map((r) => r.Type));
    expect([...types].filter((t) => t.startsWith('AWS::ApiGatewayV2::'))).toEqual([]);
    const functionIds = (all: Record<string, Resource>) => Object.entries(all).filter(([, r]) => r.Type === 'AWS::Lambda::Function').map(([id]) => id).sort();
    expect(functionIds(variant)).toEqual(functionIds(resources));
    expect(variant.ChargingTable?.Type).toBe('AWS::DynamoDB::Table');
    expect(Object.values(variant).filter((r) => r.Type === 'AWS::Events::Rule')).toHaveLength(schedules.length);
  });
});

describe('HTTP API', () => {
  const routeResources = () => ofType('AWS::ApiGatewayV2::Route').map(([, r]) => r.Properties);

  it('has exactly the routes of functions/http/routes.ts', () => {
    expect(routeResources().map((r) => r.RouteKey).sort()).toEqual(routes.map((r) => `${r.method} ${r.path}`).sort());
  });

  it.each(routes.map((r) => [`${r.method} ${r.path}`, r] as const))('%s: authorization and function', (routeKey, route) => {
    const resource = routeResources().find((r) => r.RouteKey === routeKey)!;
    expect(resource.AuthorizationType).toBe(route.public ? 'NONE' : 'AWS_IAM');
    const integrationId = resource.Target['Fn::Join'][1][1].Ref;
    expect(resources[integrationId]!.Properties).toMatchObject({
      IntegrationType: 'AWS_PROXY',
      PayloadFormatVersion: '2.0',
      IntegrationUri: { 'Fn::GetAtt': [functionId(route.handler), 'Arn'] },
    });
  });

  it('every handler of the route table has its function, agree included', () => {
    const handlers = [...new Set(routes.map((r) => r.handler))].sort();
    expect(handlers).toContain('agree');
    for (const handler of handlers) expect(resources[functionId(handler)]?.Type, handler).toBe('AWS::Lambda::Function');
    const agree = routeResources().find((r) => r.RouteKey === 'POST /sessions/{sessionId}/agree');
    expect(agree?.AuthorizationType).toBe('AWS_IAM');
  });

  it('only GET /health is public', () => {
    expect(routeResources().filter((r) => r.AuthorizationType !== 'AWS_IAM').map((r) => r.RouteKey)).toEqual(['GET /health']);
  });

  it('outputs the API URL', () => {
    template.hasOutput('ApiUrl', { Value: { 'Fn::GetAtt': [Match.stringLikeRegexp('^HttpApi'), 'ApiEndpoint'] } });
  });
});

describe('schedules', () => {
  it.each(schedules.map((s) => [s.name, s] as const))('%s: rate rule with retries and a dead-letter queue', (name, schedule) => {
    const rate = schedule.everyMinutes === 1 ? 'rate(1 minute)' : `rate(${schedule.everyMinutes} minutes)`;
    const rules = ofType('AWS::Events::Rule').filter(([, r]) => r.Properties.Targets?.[0]?.Arn?.['Fn::GetAtt']?.[0] === functionId(name));
    expect(rules).toHaveLength(1);
    const [, rule] = rules[0]!;
    expect(rule.Properties.ScheduleExpression).toBe(rate);
    expect(rule.Properties.Targets[0]).toMatchObject({
      RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 300 },
      DeadLetterConfig: { Arn: { 'Fn::GetAtt': [expect.stringMatching(/^ScheduleDeadLetterQueue/), 'Arn'] } },
    });
  });

  it.each(schedules.map((s) => [s.name] as const))('%s: a failed run is not retried by Lambda (the next run is the retry) and goes to the dead-letter queue', (name) => {
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: functionId(name) },
      MaximumRetryAttempts: 0,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [Match.stringLikeRegexp('^ScheduleDeadLetterQueue'), 'Arn'] } } },
    });
  });

  it('dead-letter queue: encrypted, 14 days, EventBridge may send to it', () => {
    template.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 24 * 3600 });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Action: 'sqs:SendMessage', Principal: { Service: 'events.amazonaws.com' } })]) },
    });
  });

  it('event bus ChargingEvents, only the notification relay may publish', () => {
    template.hasResourceProperties('AWS::Events::EventBus', { Name: 'ChargingEvents' });
    for (const name of functionNames) {
      const publishes = statementsOf(name).some((s) => actionsOf(s).includes('events:PutEvents'));
      expect({ name, publishes }).toEqual({ name, publishes: name === 'notification-relay' });
    }
  });

  it('the table stream (new images) feeds the relay the new outbox entries only, failures to the dead-letter queue', () => {
    expect(resources.ChargingTable!.Properties.StreamSpecification).toEqual({ StreamViewType: 'NEW_IMAGE' });
    const mappings = ofType('AWS::Lambda::EventSourceMapping').map(([, r]) => r.Properties);
    expect(mappings).toEqual([expect.objectContaining({
      FunctionName: { Ref: functionId('notification-relay') },
      EventSourceArn: streamArn,
      StartingPosition: 'LATEST',
      MaximumRetryAttempts: 2,
      BisectBatchOnFunctionError: true,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [expect.stringMatching(/^ScheduleDeadLetterQueue/), 'Arn'] } } },
    })]);
    const patterns = mappings[0]!.FilterCriteria.Filters.map((f: { Pattern: string }) => JSON.parse(f.Pattern));
    expect(patterns).toEqual([{ dynamodb: { NewImage: { dueShard: { S: [{ prefix: 'out#' }] } } } }]);
    // Only the relay reads the stream.
    for (const name of functionNames) {
      expect({ name, reads: dynamoGrants(name).some((g) => g.endsWith('@stream')) }).toEqual({ name, reads: name === 'notification-relay' });
    }
  });
});

describe('least privilege', () => {
  it.each(functionNames)('%s: exactly the DynamoDB actions of its row in tableActions', (name) => {
    // The relay's event source mapping reads the stream with the function's role.
    const streamReads = name === 'notification-relay' ? ['DescribeStream@stream', 'GetRecords@stream', 'GetShardIterator@stream'] : [];
    expect(dynamoGrants(name).filter((g) => g !== 'ListStreams@"*"')).toEqual([...tableActions[name], ...streamReads].sort());
  });

  it('no wildcards, no DescribeTable/Scan/Delete anywhere', () => {
    for (const name of functionNames) {
      for (const statement of statementsOf(name)) {
        for (const action of actionsOf(statement)) {
          expect(action).not.toMatch(/\*|DescribeTable|Scan|Delete|BatchWrite|PartiQL/);
        }
        // dynamodb:ListStreams (the relay's stream) has no resource to scope it to.
        if (JSON.stringify(actionsOf(statement)) === '["dynamodb:ListStreams"]') continue;
        expect(JSON.stringify(statement.Resource)).not.toBe('"*"');
      }
    }
  });

  it('health touches no table; sessions-read only reads; only the scheduled functions query the due index', () => {
    expect(statementsOf('health').flatMap(actionsOf).filter((a) => a.startsWith('dynamodb:'))).toEqual([]);
    expect(dynamoGrants('sessions-read')).toEqual(['GetItem', 'Query']);
    for (const name of scheduledFunctionNames) expect(dynamoGrants(name)).toContain('Query@due');
    for (const name of functionNames.filter((n) => !(scheduledFunctionNames as string[]).includes(n))) {
      expect(dynamoGrants(name).some((g) => g.endsWith('@due'))).toBe(false);
    }
  });
});

describe('alarms', () => {
  const alarms = () => ofType('AWS::CloudWatch::Alarm').map(([, r]) => r.Properties);

  it.each(functionNames)('%s: errors >= 1 in 5 minutes', (name) => {
    expect(alarms()).toContainEqual(expect.objectContaining({
      Namespace: 'AWS/Lambda', MetricName: 'Errors', Statistic: 'Sum', Period: 300, Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold', Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionId(name) } }],
    }));
  });

  it('DynamoDB throttles, of any one operation: each series FILLed with 0, so one throttled operation alone is a sum', () => {
    const throttles = alarms().find((a) => JSON.stringify(a.Metrics ?? []).includes('ThrottledRequests'));
    expect(throttles).toMatchObject({ Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
    const metrics = throttles!.Metrics as any[];
    const operations = metrics.flatMap((m) => m.MetricStat?.Metric?.Dimensions ?? [])
      .filter((d: any) => d.Name === 'Operation').map((d: any) => d.Value);
    expect(operations).toEqual(expect.arrayContaining(['GetItem', 'PutItem', 'UpdateItem', 'Query', 'TransactWriteItems', 'TransactGetItems']));
    const expression = metrics.find((m) => m.Expression)!.Expression as string;
    expect(expression.split(' + ')).toHaveLength(operations.length);
    expect(expression.split(' + ').every((term) => /^FILL\(t\d+, 0\)$/.test(term))).toBe(true);
  });

  it('the sweep falls behind: sessions still due after 3 runs in a row, p99 duration > 50 s', () => {
    expect(alarms()).toContainEqual(expect.objectContaining({
      Namespace: 'Charging', MetricName: 'SweepBacklog', Statistic: 'Maximum', Period: 60,
      EvaluationPeriods: 3, DatapointsToAlarm: 3, Threshold: 0, ComparisonOperator: 'GreaterThanThreshold',
    }));
    // The dimensions the sweep emits with (checked against its real output in events.test.ts).
    expect(alarms().find((a) => a.MetricName === 'SweepBacklog')!.Dimensions)
      .toEqual(Object.entries(sweepBacklogMetric.dimensionsMap).map(([Name, Value]) => ({ Name, Value })));
    expect(alarms()).toContainEqual(expect.objectContaining({
      Namespace: 'AWS/Lambda', MetricName: 'Duration', ExtendedStatistic: 'p99', Threshold: 50_000,
      ComparisonOperator: 'GreaterThanThreshold', Dimensions: [{ Name: 'FunctionName', Value: { Ref: 'InterimSweepFunction' } }],
    }));
  });

  it('the notification relay falls behind the stream: records older than 60 s, 3 minutes in a row', () => {
    expect(alarms()).toContainEqual(expect.objectContaining({
      Namespace: 'AWS/Lambda', MetricName: 'IteratorAge', Statistic: 'Maximum', Period: 60, Threshold: 60_000,
      EvaluationPeriods: 3, DatapointsToAlarm: 3, ComparisonOperator: 'GreaterThanThreshold',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: 'NotificationRelayFunction' } }],
    }));
  });

  it('the dead-letter queue has messages', () => {
    expect(alarms()).toContainEqual(expect.objectContaining({
      Namespace: 'AWS/SQS', MetricName: 'ApproximateNumberOfMessagesVisible', Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
    }));
  });
});
