// Service ratings. Read on every charge, changed rarely: served from memory for a few
// seconds so a busy session path does not pay a read per operation.
import { GetCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { key } from './table.js';
import type { Store } from './db.js';
import { ChargingError, fail } from '../domain/errors.js';
import { MONEY_PRICE, type Price, type Unit } from '../domain/rating.js';
import type { CombinedRule } from '../domain/combined.js';

export interface Service {
  serviceId: string;
  unit: Unit;
  price: Price;
  validitySeconds: number;
  interimIntervalSeconds: number;
  /** The longer interval dictated once a session has reported (seed 001: 30 s, then 90 s). */
  establishedInterimIntervalSeconds?: number;
  combined?: CombinedRule;
  updatedAt: string;
}

export type ServiceInput = Omit<Service, 'updatedAt'>;

const cache = new Map<string, { service: Service; until: number }>();

export function clearServiceCache(): void {
  cache.clear();
}

export async function putService(store: Store, input: ServiceInput): Promise<Service> {
  const service: Service = {
    ...input,
    price: input.unit === 'money' ? MONEY_PRICE : input.price,
    updatedAt: store.now().toISOString(),
  };
  await store.db.send(new PutCommand({ TableName: store.tableName, Item: { ...key.service(input.serviceId), ...service } }));
  cache.delete(`${store.tableName}/${input.serviceId}`);
  return service;
}

export async function getService(store: Store, serviceId: string): Promise<Service> {
  const cacheKey = `${store.tableName}/${serviceId}`;
  const cached = cache.get(cacheKey);
  const nowMs = Date.now();
  if (cached && cached.until > nowMs) return cached.service;
  const result = await store.db.send(new GetCommand({ TableName: store.tableName, Key: key.service(serviceId) }));
  if (!result.Item) return fail('not_found', `service ${serviceId} does not exist`);
  const { pk: _pk, sk: _sk, ...service } = result.Item;
  if (store.serviceCacheMs > 0) cache.set(cacheKey, { service: service as Service, until: nowMs + store.serviceCacheMs });
  return service as Service;
}

/**
 * The service a new request names. An unknown one is 404, unless the request's id was used
 * before: `usedBefore` looks (only on that path) and fails with 409 idempotency_conflict when
 * it was, with another body (API.md: a reused requestId answers before anything else).
 */
export async function serviceFor(store: Store, serviceId: string, usedBefore: () => Promise<unknown>): Promise<Service> {
  try {
    return await getService(store, serviceId);
  } catch (error) {
    if (error instanceof ChargingError && error.code === 'not_found') await usedBefore();
    throw error;
  }
}
