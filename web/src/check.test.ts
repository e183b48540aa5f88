import { describe, expect, it } from 'vitest';
import { check } from './check';
import { errorSchema, problemText } from './problems';
import type { RJSFSchema } from '@rjsf/utils';

// The ticker's settings schema as tinymod publishes it.
const ticker: RJSFSchema = {
  type: 'object',
  required: ['delay'],
  default: { delay: 1000 },
  properties: {
    delay: { type: 'integer', title: 'Delay', minimum: 1 },
    context: { title: 'Context' },
  },
};

describe('check', () => {
  it('accepts valid settings', () => {
    expect(check(ticker, { delay: 500, context: { a: 1 } })).toEqual({ problems: [], compileError: undefined });
  });

  it('finds what breaks the schema', () => {
    const r = check(ticker, { delay: 0 });
    expect(r.problems.map(problemText)).toEqual(['delay: must be >= 1']);
    const missing = check(ticker, {});
    expect(missing.problems.map(problemText)).toEqual(["must have required property 'delay'"]);
  });

  it('knows the SDK’s button format and ignores its display keywords', () => {
    const control = {
      type: 'object',
      properties: { start: { type: 'boolean', format: 'button', propertyOrder: 1 }, status: { type: 'string', readonly: true } },
    } as RJSFSchema;
    expect(check(control, { start: true, status: 'x' }).problems).toEqual([]);
  });

  it('says when a schema cannot be compiled', () => {
    const r = check({ type: 'nonsense' } as unknown as RJSFSchema, 1);
    expect(r.compileError).toBeTruthy();
  });
});

describe('errorSchema', () => {
  it('puts problems under their fields', () => {
    const problems = [
      ...check(ticker, { delay: 0 }).problems,
      ...check(
        { type: 'object', required: ['port'], properties: { port: { type: 'string' } } },
        {},
      ).problems,
      { instancePath: '/routes/0/condition', message: 'must be string' },
      { instancePath: '', message: 'must be object' },
    ];
    expect(errorSchema(problems)).toEqual({
      delay: { __errors: ['must be >= 1'] },
      port: { __errors: ['is required'] },
      routes: { 0: { condition: { __errors: ['must be string'] } } },
      __errors: ['must be object'],
    });
  });
});
