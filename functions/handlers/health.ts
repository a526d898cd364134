import { httpHandler } from '../http/handler.js';
import { json } from '../http/problem.js';

export const handler = httpHandler(async () => json(200, { status: 'ok' }));
