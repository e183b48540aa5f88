// Where schemas are checked. Ajv compiles a schema into a function, which the
// page's Content-Security-Policy forbids (no 'unsafe-eval'); so the check runs
// in a worker, which has the policy of its own script, and the forms get a
// validator that never compiles.

import type { RJSFSchema, ValidatorType } from '@rjsf/utils';
import type { CheckResult } from './problems';

/**
 * The validator rjsf gets for its own use (defaults, picking a oneOf option)
 * never compiles: it finds nothing valid, so rjsf picks options by how well
 * they fit. The settings are checked by checkSoon.
 */
const quietValidator: ValidatorType = {
  validateFormData: () => ({ errors: [], errorSchema: {} }),
  isValid: () => false,
  rawValidation: () => ({ errors: [], validationError: undefined }),
  reset: () => {},
};

/** The validator the forms get. */
export function formValidator(): ValidatorType {
  return quietValidator;
}

let worker: Worker | null = null;
let workerBroken = false;
let nextId = 1;
const waiting = new Map<number, (r: CheckResult) => void>();

function checker(): Worker | null {
  if (worker || workerBroken) return worker;
  try {
    worker = new Worker(new URL('./validation.worker.ts', import.meta.url), { type: 'module' });
    worker.onmessage = (e: MessageEvent<CheckResult & { id: number }>) => {
      const done = waiting.get(e.data.id);
      waiting.delete(e.data.id);
      done?.({ problems: e.data.problems, compileError: e.data.compileError });
    };
    worker.onerror = (e) => {
      workerBroken = true;
      worker = null;
      for (const done of waiting.values()) done({ problems: [], compileError: `the checking worker failed: ${e.message}` });
      waiting.clear();
    };
  } catch {
    workerBroken = true;
  }
  return worker;
}

/** checkSoon validates data against schema in the worker. */
export function checkSoon(schema: RJSFSchema, data: unknown): Promise<CheckResult> {
  const w = checker();
  if (!w) return Promise.resolve({ problems: [], compileError: 'this page cannot compile schemas' });
  const id = nextId++;
  return new Promise((resolve) => {
    waiting.set(id, resolve);
    w.postMessage({ id, schema, data });
  });
}
