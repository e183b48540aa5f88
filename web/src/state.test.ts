import { describe, expect, it } from 'vitest';
import { DEBUG_KEEP, addLocalEdge, applyEvent, applyLocalNode, emptyState, removeLocalEdge, trackedPhase } from './state';
import { node } from './testutil';
import type { TinySignal } from './types';

function signal(name: string, phase?: string, lastError?: string): TinySignal {
  return { metadata: { name }, spec: { node: 'ticker-1', port: '_control' }, status: { phase, lastError } };
}

const snapshot = {
  namespace: 'default',
  exposed: true,
  nodes: [node('a'), node('b')],
  modules: [{ metadata: { name: 'tinymod' } }],
  flows: [{ metadata: { name: 'demo' } }],
  signals: [signal('s1', 'Pending')],
  leadership: { modules: { tinymod: { leader: 'r1', acquiredAt: '', renewedAt: '', leaseDurationSeconds: 15, expired: false, replicas: [] } } },
  rates: { at: 'now', nodes: { a: { messages: 2, errors: 0 } }, ports: { 'b.in': 2 } },
  debug: [
    { node: 'd', at: '1', replica: 'r1', data: 1 },
    { node: 'd', at: '2', replica: 'r1', data: 2 },
  ],
};

describe('applyEvent', () => {
  it('replaces everything with a snapshot, debug newest first', () => {
    const s = applyEvent(applyEvent(emptyState(), 'node', { type: 'upsert', object: node('old') }), 'snapshot', snapshot);
    expect(s.loaded).toBe(true);
    expect(s.exposed).toBe(true);
    expect(Object.keys(s.nodes).sort()).toEqual(['a', 'b']);
    expect(Object.keys(s.modules)).toEqual(['tinymod']);
    expect(Object.keys(s.flows)).toEqual(['demo']);
    expect(s.leadership.modules.tinymod.leader).toBe('r1');
    expect(s.rates.ports['b.in']).toBe(2);
    expect(s.debug.map((d) => d.data)).toEqual([2, 1]);
  });

  it('upserts and deletes objects by metadata.name', () => {
    let s = applyEvent(emptyState(), 'snapshot', snapshot);
    s = applyEvent(s, 'node', { type: 'upsert', object: node('c') });
    s = applyEvent(s, 'node', { type: 'upsert', object: node('a', { component: 'ticker' }) });
    s = applyEvent(s, 'node', { type: 'delete', object: node('b') });
    expect(Object.keys(s.nodes).sort()).toEqual(['a', 'c']);
    expect(s.nodes.a.spec.component).toBe('ticker');
    s = applyEvent(s, 'flow', { type: 'delete', object: { metadata: { name: 'demo' } } });
    expect(s.flows).toEqual({});
    s = applyEvent(s, 'module', { type: 'upsert', object: { metadata: { name: 'other' } } });
    expect(Object.keys(s.modules).sort()).toEqual(['other', 'tinymod']);
  });

  it('replaces leadership and rates', () => {
    let s = applyEvent(emptyState(), 'snapshot', snapshot);
    s = applyEvent(s, 'leadership', { modules: { other: { leader: '', expired: true, replicas: [] } } });
    expect(Object.keys(s.leadership.modules)).toEqual(['other']);
    s = applyEvent(s, 'rates', { at: 'later', nodes: {}, ports: {} });
    expect(s.rates.nodes).toEqual({});
    s = applyEvent(s, 'rates', null);
    expect(s.rates).toEqual({ at: undefined, nodes: {}, ports: {} });
  });

  it('puts debug messages first and keeps the last 200', () => {
    let s = emptyState();
    for (let i = 0; i < DEBUG_KEEP + 20; i++) s = applyEvent(s, 'debug', { node: 'd', at: String(i), replica: 'r', data: i });
    expect(s.debug).toHaveLength(DEBUG_KEEP);
    expect(s.debug[0].data).toBe(DEBUG_KEEP + 19);
    expect(s.debug[DEBUG_KEEP - 1].data).toBe(20);
  });

  it('ignores unknown events and events without a name', () => {
    const s = applyEvent(emptyState(), 'snapshot', snapshot);
    expect(applyEvent(s, 'nonsense', {})).toBe(s);
    expect(applyEvent(s, 'node', { type: 'upsert', object: { metadata: {} } })).toBe(s);
  });
});

describe('trackedPhase', () => {
  it('follows a signal until it is deleted (delivered)', () => {
    let s = emptyState();
    expect(trackedPhase(s, 'x').phase).toBe('Pending');
    s = applyEvent(s, 'signal', { type: 'upsert', object: signal('x') });
    expect(trackedPhase(s, 'x').phase).toBe('Pending');
    s = applyEvent(s, 'signal', { type: 'upsert', object: signal('x', 'Delivering') });
    expect(trackedPhase(s, 'x').phase).toBe('Delivering');
    s = applyEvent(s, 'signal', { type: 'delete', object: signal('x', 'Delivering') });
    expect(trackedPhase(s, 'x')).toEqual({ phase: 'Delivered' });
  });

  it('keeps a failure and its error', () => {
    let s = applyEvent(emptyState(), 'signal', { type: 'upsert', object: signal('y', 'Failed', 'boom') });
    expect(trackedPhase(s, 'y')).toEqual({ phase: 'Failed', lastError: 'boom' });
    s = applyEvent(s, 'signal', { type: 'delete', object: signal('y') });
    expect(trackedPhase(s, 'y')).toEqual({ phase: 'Failed', lastError: 'boom' });
  });

  it('shows an explicit Delivered phase', () => {
    const s = applyEvent(emptyState(), 'signal', { type: 'upsert', object: signal('z', 'Delivered') });
    expect(trackedPhase(s, 'z').phase).toBe('Delivered');
  });

  it('counts a signal missing from a new snapshot as delivered', () => {
    let s = applyEvent(emptyState(), 'snapshot', snapshot);
    expect(trackedPhase(s, 's1').phase).toBe('Pending');
    s = applyEvent(s, 'snapshot', { ...snapshot, signals: [] });
    expect(trackedPhase(s, 's1').phase).toBe('Delivered');
  });
});

describe('local changes', () => {
  it('takes a node from an answer unless the stream has a newer one', () => {
    let s = applyEvent(emptyState(), 'node', { type: 'upsert', object: node('a', { rv: '10' }) });
    expect(applyLocalNode(s, node('a', { rv: '9', component: 'x' }))).toBe(s);
    s = applyLocalNode(s, node('a', { rv: '11', component: 'x' }));
    expect(s.nodes.a.spec.component).toBe('x');
    s = applyLocalNode(s, node('new'));
    expect(s.nodes.new).toBeDefined();
  });

  it('adds and removes edges', () => {
    let s = applyEvent(emptyState(), 'node', { type: 'upsert', object: node('a', { edges: [{ id: 'e1', port: 'out', to: 'b.in' }] }) });
    s = addLocalEdge(s, 'a', { id: 'e2', port: 'out', to: 'c.in' });
    s = addLocalEdge(s, 'a', { id: 'e2', port: 'out', to: 'c.in' });
    expect(s.nodes.a.spec.edges?.map((e) => e.id)).toEqual(['e1', 'e2']);
    s = removeLocalEdge(s, 'a', 'e1');
    expect(s.nodes.a.spec.edges?.map((e) => e.id)).toEqual(['e2']);
    expect(removeLocalEdge(s, 'nope', 'e1')).toBe(s);
  });
});
