// GET /sessions/{sessionId} and GET /multi-sessions/{multiSessionId}.
import { httpHandler, pathParam } from '../http/handler.js';
import { json } from '../http/problem.js';
import { requireSession, sessionView } from '../store/sessions.js';
import { multiSessionView } from '../store/multisession.js';
import { store } from '../config.js';

export const handler = httpHandler(async (request) => {
  if (request.routeKey === 'GET /multi-sessions/{multiSessionId}') {
    return json(200, await multiSessionView(store(), pathParam(request, 'multiSessionId')));
  }
  return json(200, sessionView(await requireSession(store(), pathParam(request, 'sessionId'))));
});
