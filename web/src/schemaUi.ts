// What a form needs beyond the JSON Schema: field order and read-only fields
// from the keywords ports publish (propertyOrder, readonly, enumTitles).

import { orderedProperties } from './control';
import type { Schema } from './types';

export type UiSchema = { [key: string]: unknown };

/** uiSchemaFor turns a port schema's display keywords into an rjsf uiSchema. */
export function uiSchemaFor(schema: Schema | undefined, depth = 0): UiSchema {
  const ui: UiSchema = {};
  if (!schema || typeof schema !== 'object' || depth > 20) return ui;
  if (schema.readonly === true || schema.readOnly === true) ui['ui:readonly'] = true;
  if (Array.isArray(schema.enumTitles)) ui['ui:enumNames'] = schema.enumTitles;
  if (schema.properties) {
    const ordered = orderedProperties(schema);
    if (ordered.some(([, p]) => typeof p?.propertyOrder === 'number')) {
      ui['ui:order'] = [...ordered.map(([k]) => k), '*'];
    }
    for (const [key, prop] of ordered) {
      const sub = uiSchemaFor(prop, depth + 1);
      if (Object.keys(sub).length > 0) ui[key] = sub;
    }
  }
  const items = schema.items as Schema | undefined;
  if (items && typeof items === 'object' && !Array.isArray(items)) {
    const sub = uiSchemaFor(items, depth + 1);
    if (Object.keys(sub).length > 0) ui.items = sub;
  }
  return ui;
}

/** The value a form starts from: the configured value, else the schema's default, else {}. */
export function initialValue(configured: unknown, schema: Schema | undefined): unknown {
  if (configured !== undefined && configured !== null) return configured;
  if (schema && schema.default !== undefined) return schema.default;
  return schema?.type === 'object' || schema?.properties ? {} : undefined;
}

/** formSchema is a port schema as forms take it: without $schema and $id, which name drafts or documents the page does not load. */
export function formSchema(schema: Schema): Schema {
  const out: Schema = { ...schema };
  delete out.$schema;
  delete out.$id;
  return out;
}
