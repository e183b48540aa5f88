import { describe, expect, it } from 'vitest';
import { controlMessage, controlSpec, orderedProperties } from './control';
import { tickerPorts } from './testutil';

describe('controlSpec', () => {
  it('makes start and stop buttons and shows running', () => {
    const spec = controlSpec(tickerPorts[1].schema);
    expect(spec.buttons).toEqual([
      { action: 'start', title: 'Start' },
      { action: 'stop', title: 'Stop' },
    ]);
    expect(spec.state).toEqual([{ key: 'running', title: 'Running', value: true }]);
    expect(spec.form).toBeNull();
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
    expect(spec.buttons.map((b) => b.action)).toEqual(['send', 'reset']);
    expect(spec.buttons[1].title).toBe('reset');
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
    const spec = controlSpec({ type: 'object', default: {}, properties: { running: { type: 'boolean', readOnly: true } } });
    expect(spec.state).toEqual([{ key: 'running', title: 'running', value: false }]);
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
