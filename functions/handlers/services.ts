// PUT /services/{serviceId}: rating. GET /services/{serviceId}: read it back.
import { httpHandler, parse, pathParam } from '../http/handler.js';
import { json } from '../http/problem.js';
import { serviceBody } from '../http/schemas.js';
import { getService, putService } from '../store/services.js';
import { store } from '../config.js';

export const handler = httpHandler(async (request) => {
  const serviceId = pathParam(request, 'serviceId');
  if (request.routeKey.startsWith('GET')) return json(200, serviceView(await getService({ ...store(), serviceCacheMs: 0 }, serviceId)));
  const body = parse(serviceBody, request.body);
  const service = await putService(store(), {
    serviceId,
    unit: body.unit,
    price: { amountMinor: body.price?.amount ?? 1, perUnits: body.price?.per ?? 1 },
    validitySeconds: body.validitySeconds,
    interimIntervalSeconds: body.interimIntervalSeconds,
    ...(body.establishedInterimIntervalSeconds ? { establishedInterimIntervalSeconds: body.establishedInterimIntervalSeconds } : {}),
    ...(body.combined ? { combined: body.combined } : {}),
  });
  return json(200, serviceView(service));
});

function serviceView(service: Awaited<ReturnType<typeof getService>>) {
  return {
    serviceId: service.serviceId,
    unit: service.unit,
    price: { amount: service.price.amountMinor, per: service.price.perUnits },
    validitySeconds: service.validitySeconds,
    interimIntervalSeconds: service.interimIntervalSeconds,
    ...(service.establishedInterimIntervalSeconds ? { establishedInterimIntervalSeconds: service.establishedInterimIntervalSeconds } : {}),
    ...(service.combined ? { combined: service.combined } : {}),
    updatedAt: service.updatedAt,
  };
}
