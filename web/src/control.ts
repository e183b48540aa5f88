// Buttons and a small form from a node's published _control schema.

import type { Schema } from './types';

/** Boolean properties with these names are actions (buttons). */
export const ACTION_NAMES: ReadonlySet<string> = new Set(['send', 'reset', 'start', 'stop']);

export interface ControlButton {
  action: string;
  title: string;
}

export interface ControlState {
  key: string;
  title: string;
  value: unknown;
}

export interface ControlSpec {
  /** The buttons to show now: with a running state, only those that fit it. */
  buttons: ControlButton[];
  /** The schema of the other (editable) properties, sent with a press; null when none. */
  form: Schema | null;
  /** Read-only properties: the state the node publishes, but running. */
  state: ControlState[];
  /**
   * Whether the node runs, when its schema has a running property (shown as
   * a badge; never a form field); undefined when it has none.
   */
  running?: boolean;
}

/** The property that carries whether a node runs. */
export const RUNNING = 'running';

/** Actions that begin a run: shown while stopped. */
export const START_ACTIONS: ReadonlySet<string> = new Set(['send', 'start']);

/** Actions that end a run: shown while running. */
export const STOP_ACTIONS: ReadonlySet<string> = new Set(['reset', 'stop']);

function hasType(s: Schema, t: string): boolean {
  return Array.isArray(s.type) ? s.type.includes(t) : s.type === t;
}

function isReadOnly(s: Schema): boolean {
  return s.readOnly === true || s.readonly === true;
}

/** Properties of an object schema in display order (propertyOrder, then as listed). */
export function orderedProperties(schema: Schema): [string, Schema][] {
  const entries = Object.entries(schema.properties ?? {});
  return entries
    .map((e, i) => ({ e, i }))
    .sort((a, b) => {
      const pa = typeof a.e[1]?.propertyOrder === 'number' ? a.e[1].propertyOrder : Infinity;
      const pb = typeof b.e[1]?.propertyOrder === 'number' ? b.e[1].propertyOrder : Infinity;
      return pa !== pb ? (pa < pb ? -1 : 1) : a.i - b.i;
    })
    .map(({ e }) => e);
}

/**
 * controlSpec reads a _control schema: boolean properties named send, reset,
 * start or stop, and properties with format "button", become buttons;
 * read-only properties are the state shown; the rest form a small form whose
 * values go with a press.
 *
 * A running property is state even without a read-only mark: its value (the
 * schema's default.running, else its own default) is spec.running, and the
 * buttons follow it: send and start while stopped, reset and stop while
 * running. Schemas without one keep all their buttons.
 */
export function controlSpec(schema: Schema | undefined | null): ControlSpec {
  const spec: ControlSpec = { buttons: [], form: null, state: [] };
  if (!schema || typeof schema !== 'object' || !schema.properties) return spec;
  const defaults = (schema.default && typeof schema.default === 'object' ? schema.default : {}) as Record<string, unknown>;
  const rest: Record<string, Schema> = {};
  for (const [key, prop] of orderedProperties(schema)) {
    if (!prop || typeof prop !== 'object') continue;
    if (key === RUNNING) {
      const value = key in defaults ? defaults[key] : prop.default;
      // Left out of the published value (omitempty) when false.
      spec.running = value === true || value === 'true';
      continue;
    }
    if (isReadOnly(prop)) {
      let value = key in defaults ? defaults[key] : prop.default;
      // A false boolean is left out of the published value (omitempty).
      if (value === undefined && hasType(prop, 'boolean')) value = false;
      spec.state.push({ key, title: prop.title || key, value });
      continue;
    }
    if (prop.format === 'button' || (hasType(prop, 'boolean') && ACTION_NAMES.has(key))) {
      spec.buttons.push({ action: key, title: prop.title || key });
      continue;
    }
    rest[key] = prop;
  }
  if (spec.running !== undefined) {
    const hidden = spec.running ? START_ACTIONS : STOP_ACTIONS;
    spec.buttons = spec.buttons.filter((b) => !hidden.has(b.action));
  }
  if (Object.keys(rest).length > 0) {
    const buttons = new Set(spec.buttons.map((b) => b.action));
    spec.form = {
      type: 'object',
      properties: rest,
      required: (schema.required ?? []).filter((r) => r in rest && !buttons.has(r)),
    };
  }
  return spec;
}

/** The message a press sends: the form's values and the action set to true. */
export function controlMessage(action: string, values: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(values ?? {})) {
    if (v !== undefined) out[k] = v;
  }
  out[action] = true;
  return out;
}
