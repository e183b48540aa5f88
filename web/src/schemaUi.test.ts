import { describe, expect, it } from 'vitest';
import { parseMapping } from './mapping';
import { formSchema, initialValue, uiSchemaFor } from './schemaUi';

describe('uiSchemaFor', () => {
  it('orders fields and marks read-only ones', () => {
    const ui = uiSchemaFor({
      type: 'object',
      properties: {
        b: { type: 'string', propertyOrder: 2 },
        a: { type: 'string', propertyOrder: 1, readonly: true },
        list: { type: 'array', items: { type: 'object', properties: { x: { type: 'string', readOnly: true } } } },
        mode: { type: 'string', enum: ['f', 's'], enumTitles: ['Fast', 'Slow'] },
      },
    });
    expect(ui['ui:order']).toEqual(['a', 'b', 'list', 'mode', '*']);
    expect(ui.a).toEqual({ 'ui:readonly': true });
    expect(ui.list).toEqual({ items: { x: { 'ui:readonly': true } } });
    expect(ui.mode).toEqual({ 'ui:enumNames': ['Fast', 'Slow'] });
    expect(ui.b).toBeUndefined();
  });

  it('starts from the configured value, else the default', () => {
    expect(initialValue({ delay: 5 }, { type: 'object', default: { delay: 1000 } })).toEqual({ delay: 5 });
    expect(initialValue(undefined, { type: 'object', default: { delay: 1000 } })).toEqual({ delay: 1000 });
    expect(initialValue(undefined, { type: 'object' })).toEqual({});
    expect(initialValue(undefined, {})).toBeUndefined();
  });
});

describe('parseMapping', () => {
  it('reads empty as no mapping and JSON as the mapping', () => {
    expect(parseMapping('  ')).toEqual({ ok: true, value: null });
    expect(parseMapping('{"a": "{{$.b}}"}')).toEqual({ ok: true, value: { a: '{{$.b}}' } });
    const bad = parseMapping('{a');
    expect(bad.ok).toBe(false);
  });
});

describe('formSchema', () => {
  it('drops $schema and $id', () => {
    const s = { $schema: 'https://json-schema.org/draft/2020-12/schema', $id: 'x', type: 'object' };
    expect(formSchema(s)).toEqual({ type: 'object' });
    expect(s.$schema).toBeDefined();
  });
});
