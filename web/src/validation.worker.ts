// Checks values against schemas off the page (see validation.ts).

import { check } from './check';

const scope = self as unknown as { postMessage(message: unknown): void };

self.onmessage = (e: MessageEvent<{ id: number; schema: object; data: unknown }>) => {
  const { id, schema, data } = e.data;
  let result;
  try {
    result = check(schema, data);
  } catch (err) {
    result = { problems: [], compileError: err instanceof Error ? err.message : String(err) };
  }
  scope.postMessage({ id, ...result });
};
