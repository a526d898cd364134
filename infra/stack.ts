// The charging system in AWS: one DynamoDB table, one Lambda per handler, an HTTP API
// guarded by IAM, EventBridge schedules for the sweep, the recharge trigger and the
// notification relay's backstop, the table's stream feeding that relay, alarms.
// Everything that also exists locally (routes, schedules, the table layout) is read from
// functions/, so what runs under `npm start` is what gets deployed.
import { CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import type { Construct } from 'constructs';
import { join } from 'node:path';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import * as eventSources from 'aws-cdk-lib/aws-lambda-event-sources';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import type { CreateTableCommandInput, KeySchemaElement, Projection } from '@aws-sdk/client-dynamodb';
import { routes, schedules } from '../functions/http/routes.js';
import { DUE_INDEX, tableDefinition, TTL_ATTRIBUTE } from '../functions/store/table.js';
import {
  entryOf, esbuildOptions, functionNames, pascalCase, repoRoot, scheduledFunctionNames, type FunctionName,
} from './bundling.js';

/**
 * Least privilege: the DynamoDB actions each function's code can send, read off the store
 * modules it reaches (functions/store/*.ts). A transaction (TransactWriteItems) has no IAM
 * action of its own: each item in it is authorized as its single-item action (Put ->
 * PutItem, Update -> UpdateItem, ConditionCheck -> ConditionCheckItem; the store uses no
 * ConditionCheck or Delete items). `Query` is a query on the table itself; `Query@due` a
 * query on the 'due' index. DescribeTable/CreateTable are local-only (ensureTable).
 *
 * Every function that moves money goes through applyOp (store/ops.ts), whose compaction
 * backstop (store/compaction.ts) may finish another process's step: write the request or
 * session record (PutItem/UpdateItem), and when that step closed a session of a
 * multi-session, settle it (store/multisession.ts: Query MS#<id>, GetItem, the refund
 * transaction). So all of them get Get/Put/Update on the table and Query on the table.
 *
 * When a handler starts sending a new command, add it here: test/infra/events.test.ts
 * records what each handler sends while replaying events/ and fails on anything missing.
 */
export const tableActions: Record<FunctionName, string[]> = {
  // GET /health touches nothing.
  health: [],
  // putService (PutItem), getService (GetItem).
  services: ['GetItem', 'PutItem'],
  // createAccount (conditional PutItem, GetItem on a repeat; a member: transaction of the
  // account Put and its link Put), requireAccount (GetItem), a main account's view (Query
  // MEMBER# links, the members by TransactGetItems (GetItem) or BatchGetItem),
  // topUp (transaction: Put request + Update account + Put ledger), readLedger (Query LEDGER#),
  // PATCH: applyConsumptionLimit (UpdateItem; giving back an allotment: transaction Update
  // main + Update member + Put ledger entries, store/allotments.ts).
  // GET lists the service accounts (BatchGetItem); PATCH sets sponsors (GetItem, UpdateItem).
  // A member's creation requires its main account's status as read (ConditionCheckItem); PATCH
  // status writes the main account and its members (UpdateItem, Query MEMBER#).
  accounts: ['GetItem', 'PutItem', 'UpdateItem', 'Query', 'BatchGetItem', 'ConditionCheckItem'],
  // putServiceAccount (conditional PutItem or UpdateItem, UpdateItem on the owner, the
  // schedule marker: GetItem, PutItem, UpdateItem), manualRecharge (transaction: Put
  // request + Update owner + Update service account + Put ledger entries + Put notification;
  // then the service account and the owner, BatchGetItem, and the owner's low_balance, PutItem),
  // the ledger of units (Query LEDGER#).
  'service-accounts': ['GetItem', 'PutItem', 'UpdateItem', 'Query', 'BatchGetItem'],
  // getService, applyOp (UpdateItem on the account), getSessionItem, transaction Put
  // session + ledger entries + multi-session member; the duplicate-hold give-back (UpdateItem).
  // Every function that grants or charges more than it holds: a main account short of money
  // takes back its members' idle allotments (store/cover.ts: Query of its MEMBER# items,
  // BatchGetItem of the members; until stop 25 not granted: review 6).
  reserve: ['GetItem', 'PutItem', 'UpdateItem', 'Query', 'BatchGetItem'],
  // requireSession with the request's answer item (TransactGetItems: GetItem on each),
  // applyOp, finishStep / rollForward (transaction: Update session + Put ledger + Put
  // answer); a closing step settles its multi-session (Query MS#, refund transaction).
  update: ['GetItem', 'PutItem', 'UpdateItem', 'Query', 'BatchGetItem'],
  // A closing step only charges from its hold and gives the rest back: it never asks for cover.
  debit: ['GetItem', 'PutItem', 'UpdateItem', 'Query'],
  // As debit, plus the refund transaction (Update session + Update account + Put ledger).
  refund: ['GetItem', 'PutItem', 'UpdateItem', 'Query'],
  // Multi-party: requireSession with the request's answer item (TransactGetItems), the agreement
  // (UpdateItem session), activation (one transaction: Update each party account + Update
  // session + Put ledger entries + Put answer), the kept answer (PutItem); a party attached to a main account that is short takes an
  // allotment and tries again (GetItem account, transaction Update + Update + Put ledger); a
  // short main account takes back its members' allotments (Query MEMBER#, BatchGetItem; until
  // stop 25 not granted: review 6). agree never closes a session, so it never settles a
  // multi-session.
  agree: ['GetItem', 'PutItem', 'UpdateItem', 'Query', 'BatchGetItem'],
  // requireSession (GetItem), multiSessionView (Query MS#, GetItem per member and per charged account). Read only.
  'sessions-read': ['GetItem', 'Query'],
  // getService, applyOp, storedAnswer (GetItem), transaction Put request + ledger, the
  // compensating UpdateItem on a requestId conflict.
  'direct-debit': ['GetItem', 'PutItem', 'UpdateItem', 'Query', 'BatchGetItem'],
  // findDueSessions (Query on the due index), sweepSession (GetItem, UpdateItem session
  // and account), recordExpiry / rollForward (transaction: Update session + Put ledger),
  // settling the multi-session of an expired session (Query MS#); a main account's status a
  // PATCH left on the way to its members (Query MEMBER#, UpdateItem on each).
  'interim-sweep': ['GetItem', 'PutItem', 'UpdateItem', 'Query', `Query@${DUE_INDEX}`],
  // Due recharge markers (Query on the due index, BatchGetItem of the markers and their
  // service accounts), each recharge a transaction (Update marker + Update owner + Update
  // service account + Put ledger entries + Put notification; then the service account and the
  // owner, BatchGetItem, and the owner's low_balance, PutItem), a failure notice (PutItem),
  // consuming a stale marker (UpdateItem); an owner short of money takes back its members'
  // allotments (Query MEMBER#: until stop 25 not granted; review 6).
  'recharge-trigger': ['GetItem', 'PutItem', 'UpdateItem', 'BatchGetItem', 'Query', `Query@${DUE_INDEX}`],
  // From the stream: clearing each relayed entry from the outbox (UpdateItem). On its schedule:
  // the pending entries (Query on the due index, BatchGetItem), cleared alike.
  'notification-relay': ['UpdateItem', 'BatchGetItem', `Query@${DUE_INDEX}`],
};

/**
 * The sweep's backlog, as functions/handlers/interim-sweep.ts emits it (Powertools Metrics,
 * embedded metric format). Powertools always adds a `service` dimension, and to CloudWatch
 * a metric with other dimensions is another metric: the alarm must name it.
 * test/infra/events.test.ts checks this against what the handler really prints.
 */
export const METRICS_NAMESPACE = 'Charging';
export const sweepBacklogMetric = {
  namespace: METRICS_NAMESPACE,
  metricName: 'SweepBacklog',
  dimensionsMap: { service: 'interim-sweep' } as Record<string, string>,
};

/** The one function that publishes to the event bus (notifications, interim-update requests). */
const eventPublishers: FunctionName[] = ['notification-relay'];

export interface ChargingStackProps extends StackProps {
  /** Protect the table against deletion (and retain it when the stack goes). Default true. */
  deletionProtection?: boolean;
  /** Physical table name; default: generated by CloudFormation. */
  tableName?: string;
  /** Name of the custom event bus. Default "ChargingEvents". */
  eventBusName?: string;
  /**
   * Declare AWS_ENDPOINT_URL_DYNAMODB (and, on the functions that publish, _EVENTBRIDGE) as
   * empty variables on every function, so `sam local invoke --env-vars` can point them at
   * DynamoDB Local: SAM only overrides variables the template declares. Empty means the
   * regional endpoint (the SDK ignores an empty value). For local templates; default false.
   */
  localEndpoints?: boolean;
  /**
   * The HTTP API (API Gateway v2). Default true; false leaves it out, e.g. for LocalStack's
   * free edition, which has no API Gateway v2: the functions are then invoked directly.
   */
  httpApi?: boolean;
}

export class ChargingStack extends Stack {
  readonly table: dynamodb.Table;
  readonly functions: Record<FunctionName, nodejs.NodejsFunction>;
  /** Undefined when the stack is built with `httpApi: false`. */
  readonly api: apigw.HttpApi | undefined;
  readonly eventBus: events.EventBus;
  readonly deadLetterQueue: sqs.Queue;

  constructor(scope: Construct, id: string, props: ChargingStackProps = {}) {
    super(scope, id, props);
    const deletionProtection = props.deletionProtection ?? true;

    // ------------------------------------------------------------------------- table
    this.table = tableFromDefinition(this, 'Table', tableDefinition(props.tableName ?? 'charging'), {
      tableName: props.tableName,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection,
      timeToLiveAttribute: TTL_ATTRIBUTE,
      // New images only: the notification relay reads the outbox entries written (see below).
      stream: dynamodb.StreamViewType.NEW_IMAGE,
      removalPolicy: deletionProtection ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY,
    });
    // The table holds the money: its logical id must never move with a refactoring.
    (this.table.node.defaultChild as dynamodb.CfnTable).overrideLogicalId('ChargingTable');

    // ------------------------------------------------------------------------ events
    this.eventBus = new events.EventBus(this, 'ChargingEvents', { eventBusName: props.eventBusName ?? 'ChargingEvents' });

    // -------------------------------------------------------------------- functions
    const scheduled = new Set<FunctionName>(scheduledFunctionNames);
    const functions = {} as Record<FunctionName, nodejs.NodejsFunction>;
    for (const name of functionNames) {
      const id = `${pascalCase(name)}Function`;
      const logGroup = new logs.LogGroup(this, `${id}Logs`, {
        retention: logs.RetentionDays.ONE_MONTH,
        removalPolicy: RemovalPolicy.DESTROY,
      });
      const fn = new nodejs.NodejsFunction(this, id, {
        entry: entryOf(name),
        handler: 'handler',
        projectRoot: repoRoot,
        depsLockFilePath: join(repoRoot, 'package-lock.json'),
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture: lambda.Architecture.ARM_64,
        memorySize: 512,
        timeout: Duration.seconds(scheduled.has(name) ? 60 : 10),
        logGroup,
        description: scheduled.has(name) ? `charging: ${name} (schedule)` : `charging: ${name} (HTTP)`,
        environment: {
          TABLE_NAME: this.table.tableName,
          POWERTOOLS_SERVICE_NAME: `charging-${name}`,
          POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
          // No CHARGING_API_TOKEN: in AWS, IAM guards the API before a handler runs.
          ...(eventPublishers.includes(name) ? { EVENT_BUS_NAME: this.eventBus.eventBusName } : {}),
          // The stream relays at once; the scheduled backstop leaves it the first minute.
          ...(name === 'notification-relay' ? { RELAY_BACKSTOP_AFTER_SECONDS: '60' } : {}),
          ...(props.localEndpoints ? { AWS_ENDPOINT_URL_DYNAMODB: '' } : {}),
          ...(props.localEndpoints && eventPublishers.includes(name) ? { AWS_ENDPOINT_URL_EVENTBRIDGE: '' } : {}),
        },
        bundling: {
          format: nodejs.OutputFormat.ESM,
          minify: esbuildOptions.minify,
          sourceMap: esbuildOptions.sourcemap,
          target: esbuildOptions.target,
          mainFields: [...esbuildOptions.mainFields],
          banner: esbuildOptions.banner,
          charset: nodejs.Charset.UTF8,
          externalModules: [...esbuildOptions.external],
          loader: { ...esbuildOptions.loader },
          esbuildArgs: {
            '--legal-comments': esbuildOptions.legalComments,
            ...Object.fromEntries(Object.entries(esbuildOptions.supported).map(([feature, on]) => [`--supported:${feature}`, String(on)])),
            ...Object.fromEntries(Object.entries(esbuildOptions.alias).map(([from, to]) => [`--alias:${from}`, to])),
          },
          forceDockerBundling: false,
        },
      });
      // Readable, stable logical ids: `sam local invoke ReserveFunction -t cdk.out/...`.
      (fn.node.defaultChild as lambda.CfnFunction).overrideLogicalId(id);
      (logGroup.node.defaultChild as logs.CfnLogGroup).overrideLogicalId(`${id}Logs`);
      grantTableActions(fn, this.table, tableActions[name]);
      if (eventPublishers.includes(name)) this.eventBus.grantPutEventsTo(fn);
      functions[name] = fn;
    }
    this.functions = functions;

    // ---------------------------------------------------------------------- HTTP API
    this.api = (props.httpApi ?? true) ? this.httpApiFor(functions) : undefined;
    new CfnOutput(this, 'TableName', { value: this.table.tableName });
    new CfnOutput(this, 'EventBusName', { value: this.eventBus.eventBusName });

    // -------------------------------------------------------------------- schedules
    this.deadLetterQueue = new sqs.Queue(this, 'ScheduleDeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      retentionPeriod: Duration.days(14),
      enforceSSL: true,
    });
    for (const schedule of schedules) {
      // The rule's retries and dead-letter queue cover delivering the event. A run that fails
      // is not retried by Lambda (the next scheduled run is the retry, and overlapping runs
      // only cost): it goes to the same queue, which has an alarm.
      functions[schedule.name].configureAsyncInvoke({ retryAttempts: 0, onFailure: new destinations.SqsDestination(this.deadLetterQueue) });
      new events.Rule(this, `${pascalCase(schedule.name)}Schedule`, {
        description: `charging: run ${schedule.name} every ${schedule.everyMinutes} minute(s)`,
        schedule: events.Schedule.rate(Duration.minutes(schedule.everyMinutes)),
        targets: [new targets.LambdaFunction(functions[schedule.name], {
          retryAttempts: 2,
          maxEventAge: Duration.minutes(5),
          deadLetterQueue: this.deadLetterQueue,
        })],
      });
    }

    // ------------------------------------------------------------ notification relay
    // Every notification is written to the table's outbox by the transaction that decides it
    // (functions/store/notifications.ts). The stream hands the relay each new outbox entry
    // about a second later; the filter drops every other write before any invocation, so the
    // charging path pays no Lambda run for it. A batch that keeps failing goes to the
    // dead-letter queue after two retries, and its entries stay in the outbox for the
    // relay's scheduled backstop: a notification is published at least once.
    functions['notification-relay'].addEventSource(new eventSources.DynamoEventSource(this.table, {
      startingPosition: lambda.StartingPosition.LATEST,
      batchSize: 100,
      retryAttempts: 2,
      bisectBatchOnError: true,
      maxRecordAge: Duration.hours(1),
      onFailure: new eventSources.SqsDlq(this.deadLetterQueue),
      filters: [lambda.FilterCriteria.filter({ dynamodb: { NewImage: { dueShard: { S: lambda.FilterRule.beginsWith('out#') } } } })],
    }));

    // ----------------------------------------------------------------------- alarms
    for (const name of functionNames) {
      functions[name].metricErrors({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM })
        .createAlarm(this, `${pascalCase(name)}FunctionErrorsAlarm`, {
          alarmDescription: `${name}: at least one invocation failed in 5 minutes`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        });
    }

    // Throttled requests of every operation the functions send (transactions included).
    // ConditionCheckItem is an IAM action only: its throttles are TransactWriteItems' (fails
    // before: a series nothing publishes, billed as an alarm metric; review 9 of stop 26).
    const operations = [...new Set([
      ...Object.values(tableActions).flat().map((action) => action.split('@')[0]!).filter((action) => action !== 'ConditionCheckItem'),
      'TransactWriteItems', 'TransactGetItems',
    ])].map((operation) => operation as dynamodb.Operation);
    // DynamoDB publishes ThrottledRequests only for operations that were throttled, and a sum
    // of time series has no value where one of them has none: each is FILLed with 0.
    const throttled = Object.fromEntries(operations.map((operation, i) => [`t${i}`, this.table.metric('ThrottledRequests', {
      dimensionsMap: { TableName: this.table.tableName, Operation: operation }, statistic: cloudwatch.Stats.SUM, period: Duration.minutes(5),
    })]));
    new cloudwatch.Alarm(this, 'TableThrottlesAlarm', {
      metric: new cloudwatch.MathExpression({
        expression: Object.keys(throttled).map((id) => `FILL(${id}, 0)`).join(' + '),
        usingMetrics: throttled, label: 'throttled requests, all operations', period: Duration.minutes(5),
      }),
      alarmDescription: 'DynamoDB throttled requests on the charging table (hot account item or table limits)',
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    // The sweep falls behind: the backlog it reports ...
    new cloudwatch.Metric({
      ...sweepBacklogMetric,
      statistic: cloudwatch.Stats.MAXIMUM,
      period: Duration.minutes(1),
    }).createAlarm(this, 'SweepBacklogAlarm', {
      // Each run counts what it left due (up to 1000): work left three runs in a row is behind.
      alarmDescription: 'interim sweep falls behind: sessions still due after each of 3 runs in a row',
      threshold: 0,
      evaluationPeriods: 3,
      datapointsToAlarm: 3,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    // ... or its runs come close to the 60 s timeout.
    functions['interim-sweep'].metricDuration({ statistic: cloudwatch.Stats.p(99), period: Duration.minutes(5) })
      .createAlarm(this, 'SweepDurationAlarm', {
        alarmDescription: 'interim sweep p99 duration above 50 s (timeout is 60 s)',
        threshold: 50_000,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });

    // Notifications go out late: the stream's oldest record waited more than a minute.
    functions['notification-relay'].metric('IteratorAge', { statistic: cloudwatch.Stats.MAXIMUM, period: Duration.minutes(1) })
      .createAlarm(this, 'NotificationRelayLagAlarm', {
        alarmDescription: 'notification relay falls behind the table stream: records older than 60 s, 3 minutes in a row',
        threshold: 60_000,
        evaluationPeriods: 3,
        datapointsToAlarm: 3,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });

    this.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: cloudwatch.Stats.MAXIMUM })
      .createAlarm(this, 'ScheduleDeadLetterQueueAlarm', {
        alarmDescription: 'a scheduled run could not be delivered to its function, or a notification batch from the stream failed (see the dead-letter queue)',
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
  }

  /** The HTTP API: every route of functions/http/routes.ts on its function, IAM-authorized but GET /health. */
  private httpApiFor(functions: Record<FunctionName, nodejs.NodejsFunction>): apigw.HttpApi {
    const api = new apigw.HttpApi(this, 'HttpApi', {
      apiName: `${this.stackName}-api`,
      description: 'Online charging API (see API.md); every route but GET /health is IAM (SigV4) authorized',
    });
    const iamAuthorizer = new HttpIamAuthorizer();
    const noAuthorizer = new apigw.HttpNoneAuthorizer();
    const integrations = new Map<FunctionName, HttpLambdaIntegration>();
    for (const route of routes) {
      let integration = integrations.get(route.handler);
      if (!integration) {
        integration = new HttpLambdaIntegration(`${pascalCase(route.handler)}Integration`, functions[route.handler]);
        integrations.set(route.handler, integration);
      }
      api.addRoutes({
        path: route.path,
        methods: [apigw.HttpMethod[route.method]],
        integration,
        authorizer: route.public ? noAuthorizer : iamAuthorizer,
      });
    }
    new CfnOutput(this, 'ApiUrl', { value: api.apiEndpoint, description: 'Base URL of the charging API' });
    return api;
  }
}

/** Grants the table actions of one row of `tableActions`: `Action` on the table, `Action@index` on that index. */
function grantTableActions(fn: lambda.IFunction, table: dynamodb.ITable, actions: string[]): void {
  const byResource = new Map<string, string[]>();
  for (const action of actions) {
    const [name, index] = action.split('@') as [string, string | undefined];
    const resource = index ? `${table.tableArn}/index/${index}` : table.tableArn;
    byResource.set(resource, [...(byResource.get(resource) ?? []), `dynamodb:${name}`]);
  }
  for (const [resource, granted] of byResource) {
    fn.addToRolePolicy(new iam.PolicyStatement({ actions: granted, resources: [resource] }));
  }
}

type TableProps = Omit<dynamodb.TableProps, 'partitionKey' | 'sortKey' | 'billingMode'>;

/**
 * A CDK table with the keys, billing mode and indexes of the table definition the local
 * server creates (functions/store/table.ts). Anything in the definition this function does
 * not translate is an error, so the two cannot drift apart silently.
 */
export function tableFromDefinition(scope: Construct, id: string, definition: CreateTableCommandInput, props: TableProps): dynamodb.Table {
  const attributeTypes: Record<string, dynamodb.AttributeType> = { S: dynamodb.AttributeType.STRING, N: dynamodb.AttributeType.NUMBER, B: dynamodb.AttributeType.BINARY };
  const attribute = (name: string): dynamodb.Attribute => {
    const type = definition.AttributeDefinitions?.find((a) => a.AttributeName === name)?.AttributeType;
    if (!type || !attributeTypes[type]) throw new Error(`table definition: no attribute type for key ${name}`);
    return { name, type: attributeTypes[type] };
  };
  const keys = (schema: KeySchemaElement[] | undefined) => {
    const hash = schema?.find((k) => k.KeyType === 'HASH')?.AttributeName;
    const range = schema?.find((k) => k.KeyType === 'RANGE')?.AttributeName;
    if (!hash) throw new Error('table definition: a key schema without a HASH key');
    return { partitionKey: attribute(hash), ...(range ? { sortKey: attribute(range) } : {}) };
  };
  const projection = (p: Projection | undefined) => {
    switch (p?.ProjectionType) {
      case 'KEYS_ONLY': return { projectionType: dynamodb.ProjectionType.KEYS_ONLY };
      case 'INCLUDE': return { projectionType: dynamodb.ProjectionType.INCLUDE, nonKeyAttributes: p.NonKeyAttributes ?? [] };
      case 'ALL': case undefined: return { projectionType: dynamodb.ProjectionType.ALL };
      default: throw new Error(`table definition: projection ${String(p?.ProjectionType)}`);
    }
  };
  if (definition.BillingMode !== 'PAY_PER_REQUEST') throw new Error('table definition: only on-demand (PAY_PER_REQUEST) is deployed');
  if (definition.LocalSecondaryIndexes?.length) throw new Error('table definition: local secondary indexes are not translated');
  const table = new dynamodb.Table(scope, id, {
    ...props,
    ...keys(definition.KeySchema),
    billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
  });
  for (const index of definition.GlobalSecondaryIndexes ?? []) {
    if (!index.IndexName) throw new Error('table definition: an index without a name');
    table.addGlobalSecondaryIndex({ indexName: index.IndexName, ...keys(index.KeySchema), ...projection(index.Projection) });
  }
  return table;
}
