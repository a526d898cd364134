// POST /sessions/{sessionId}/agree: a party agrees to a multi-party session's principle; the
// last agreement reserves every party's most possible share, all or nothing.
import { httpHandler, parse, pathParam, requestHash } from '../http/handler.js';
import { answerResponse } from '../http/problem.js';
import { agreeBody } from '../http/schemas.js';
import { agree } from '../store/parties.js';
import { store } from '../config.js';

export const handler = httpHandler(async (request) => {
  const sessionId = pathParam(request, 'sessionId');
  const body = parse(agreeBody, request.body);
  return answerResponse(await agree(store(), sessionId, body, requestHash(request, body)));
});
