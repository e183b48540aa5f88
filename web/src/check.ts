// Checking a value against its port schema with ajv, through rjsf's ajv8
// validator: the same check wherever it runs (the page, or its worker).

import { customizeValidator } from '@rjsf/validator-ajv8';
import type { RJSFSchema } from '@rjsf/utils';
import type { CheckResult } from './problems';

/** ajv with the formats ports use that ajv does not know ("button" on a boolean is a display hint). */
export const ajvValidator = customizeValidator({ customFormats: { button: () => true } });

/** check validates data against schema, here and now. */
export function check(schema: RJSFSchema, data: unknown): CheckResult {
  const raw = ajvValidator.rawValidation(schema, data);
  const problems = (raw.errors ?? []).map((e) => ({
    instancePath: e.instancePath ?? '',
    keyword: e.keyword,
    message: e.message ?? 'is invalid',
    params: e.params as Record<string, unknown>,
  }));
  return { problems, compileError: raw.validationError ? raw.validationError.message : undefined };
}
