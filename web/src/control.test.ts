import { describe, expect, it } from 'vitest';
import { controlMessage, controlSpec, orderedProperties } from './control';
import { tickerPorts } from './testutil';

describe('controlSpec', () => {
  it('shows stop, not start, while the ticker runs, and running as state', () => {
    const spec = controlSpec(tickerPorts[1].schema);
    expect(spec.buttons).toEqual([{ action: 'stop', title: 'Stop' }]);
    expect(spec.running).toBe(true);
    expect(spec.state).toEqual([]);
    expect(spec.form).toBeNull();
  });

  it('shows start, not stop, while the ticker is stopped (running left out of the default)', () => {
    const schema = { ...tickerPorts[1].schema, default: {} };
    const spec = controlSpec(schema);
    expect(spec.buttons).toEqual([{ action: 'start', title: 'Start' }]);
    expect(spec.running).toBe(false);
    expect(controlSpec({ ...schema, default: undefined }).buttons.map((b) => b.action)).toEqual(['start']);
    expect(controlSpec({ ...schema, default: { running: false } }).buttons.map((b) => b.action)).toEqual(['start']);
  });

  it('shows Send while the signal is stopped and Reset while it runs', () => {
    const signal = (running: boolean | undefined) => ({
      type: 'object',
      default: running === undefined ? {} : { running },
      properties: {
        send: { type: 'boolean', title: 'Send' },
        reset: { type: 'boolean', title: 'Reset' },
        context: { title: 'Context' },
        running: { type: 'boolean', title: 'Running', readOnly: true },
      },
    });
    const stopped = controlSpec(signal(undefined));
    expect(stopped.buttons).toEqual([{ action: 'send', title: 'Send' }]);
    expect(stopped.running).toBe(false);
    expect(stopped.state).toEqual([]);
    expect(Object.keys(stopped.form?.properties ?? {})).toEqual(['context']);
    const running = controlSpec(signal(true));
    expect(running.buttons).toEqual([{ action: 'reset', title: 'Reset' }]);
    expect(running.running).toBe(true);
    expect(controlSpec(signal(false)).buttons.map((b) => b.action)).toEqual(['send']);
  });

  it('treats running as state even without a read-only mark', () => {
    const spec = controlSpec({
      type: 'object',
      default: { running: true },
      properties: {
        start: { type: 'boolean' },
        stop: { type: 'boolean' },
        running: { type: 'boolean' },
        speed: { type: 'integer' },
      },
    });
    expect(spec.running).toBe(true);
    expect(spec.buttons.map((b) => b.action)).toEqual(['stop']);
    expect(spec.state).toEqual([]);
    expect(Object.keys(spec.form?.properties ?? {})).toEqual(['speed']);
    expect(controlSpec({ type: 'object', properties: { running: { type: 'boolean' } } })).toEqual({
      buttons: [],
      form: null,
      state: [],
      running: false,
    });
  });

  it('reads running from the property’s own default when the schema has none', () => {
    const spec = controlSpec({
      type: 'object',
      properties: { send: { type: 'boolean' }, reset: { type: 'boolean' }, running: { type: 'boolean', readOnly: true, default: true } },
    });
    expect(spec.buttons.map((b) => b.action)).toEqual(['reset']);
  });

  it('follows running for format-button actions, and keeps other buttons', () => {
    const schema = (running: boolean) => ({
      type: 'object',
      default: { running },
      properties: {
        start: { type: 'string', format: 'button' },
        stop: { type: 'string', format: 'button' },
        flush: { type: 'boolean', format: 'button' },
        running: { type: 'boolean', readOnly: true },
      },
    });
    expect(controlSpec(schema(false)).buttons.map((b) => b.action)).toEqual(['start', 'flush']);
    expect(controlSpec(schema(true)).buttons.map((b) => b.action)).toEqual(['stop', 'flush']);
  });

  it('keeps both buttons when the schema has no running property', () => {
    const spec = controlSpec({
      type: 'object',
      default: {},
      properties: { send: { type: 'boolean' }, reset: { type: 'boolean' }, start: { type: 'boolean' }, stop: { type: 'boolean' } },
    });
    expect(spec.buttons.map((b) => b.action)).toEqual(['send', 'reset', 'start', 'stop']);
    expect(spec.running).toBeUndefined();
  });

  it('puts other properties in a form', () => {
    const spec = controlSpec({
      type: 'object',
      required: ['send', 'context'],
      properties: {
        send: { type: 'boolean', title: 'Send' },
        reset: { type: 'boolean' },
        context: { title: 'Context' },
        running: { type: 'boolean', readOnly: true },
      },
    });
    expect(spec.buttons.map((b) => b.action)).toEqual(['send']);
    expect(spec.buttons[0].title).toBe('Send');
    expect(spec.form).toEqual({ type: 'object', properties: { context: { title: 'Context' } }, required: ['context'] });
  });

  it('follows format button and the SDK’s readonly and propertyOrder', () => {
    const spec = controlSpec({
      type: 'object',
      default: { status: 'stopped', start: false },
      properties: {
        start: { type: 'boolean', format: 'button', title: 'Start', propertyOrder: 2 },
        status: { type: 'string', readonly: true, title: 'Status', propertyOrder: 1 },
        go: { type: 'boolean', format: 'button', propertyOrder: 3 },
        enabled: { type: 'boolean' },
      },
    });
    expect(spec.buttons.map((b) => b.action)).toEqual(['start', 'go']);
    expect(spec.state).toEqual([{ key: 'status', title: 'Status', value: 'stopped' }]);
    expect(Object.keys(spec.form?.properties ?? {})).toEqual(['enabled']);
  });

  it('changes with the published schema', () => {
    const stopped = controlSpec({ type: 'object', properties: { start: { type: 'boolean', format: 'button' } } });
    const running = controlSpec({ type: 'object', properties: { stop: { type: 'boolean', format: 'button' } } });
    expect(stopped.buttons.map((b) => b.action)).toEqual(['start']);
    expect(running.buttons.map((b) => b.action)).toEqual(['stop']);
  });

  it('shows a read-only boolean left out of the default as false', () => {
    const spec = controlSpec({ type: 'object', default: {}, properties: { paused: { type: 'boolean', readOnly: true } } });
    expect(spec.state).toEqual([{ key: 'paused', title: 'paused', value: false }]);
  });

  it('has nothing for no schema, or a schema without properties', () => {
    expect(controlSpec(undefined)).toEqual({ buttons: [], form: null, state: [] });
    expect(controlSpec({})).toEqual({ buttons: [], form: null, state: [] });
  });

  it('does not make a button of a non-boolean named like an action', () => {
    const spec = controlSpec({ type: 'object', properties: { send: { type: 'string' } } });
    expect(spec.buttons).toEqual([]);
    expect(Object.keys(spec.form?.properties ?? {})).toEqual(['send']);
  });
});

describe('controlMessage', () => {
  it('sends the form’s values and the action', () => {
    expect(controlMessage('send', { context: { a: 1 }, skip: undefined })).toEqual({ context: { a: 1 }, send: true });
    expect(controlMessage('start', undefined)).toEqual({ start: true });
  });
});

describe('orderedProperties', () => {
  it('orders by propertyOrder, then as listed', () => {
    const order = orderedProperties({ properties: { c: {}, b: { propertyOrder: 2 }, a: { propertyOrder: 1 }, d: {} } }).map(([k]) => k);
    expect(order).toEqual(['a', 'b', 'c', 'd']);
  });
});
