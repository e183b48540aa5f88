import { describe, expect, it } from 'vitest';
import { buildGraph, edgeMapping, edgeRate, graphShape, portSide, publishedPorts, splitTarget } from './graph';
import { byName, module, node, tickerPorts } from './testutil';
import { NO_FLOW } from './flows';

const inPort = [{ name: 'in', label: 'In', position: 'left' as const }];
const routerPorts = [
  { name: '_settings', schema: {} },
  { name: 'in', label: 'In' },
  { name: 'loud', label: 'Loud', source: true },
  { name: 'default', label: 'Default', source: true, position: 'bottom' as const },
];

function demo() {
  return byName(
    node('ticker-1', {
      flow: 'demo',
      component: 'ticker',
      ports: tickerPorts,
      edges: [{ id: 'ticker-router', port: 'out', to: 'router-1.in' }],
    }),
    node('router-1', {
      flow: 'demo',
      component: 'router',
      ports: routerPorts,
      edges: [
        { id: 'router-loud', port: 'loud', to: 'other-sink.in' },
        { id: 'router-quiet', port: 'default', to: 'ghost.in' },
      ],
    }),
    node('other-sink', { module: 'greeter', flow: 'hello', ports: inPort }),
    node('feeder', {
      module: 'greeter',
      flow: 'hello',
      ports: [{ name: 'out', source: true }],
      edges: [{ id: 'feed', port: 'out', to: 'ticker-1.in2' }],
    }),
    node('unrelated', { flow: 'hello', edges: [{ id: 'x', port: 'out', to: 'other-sink.in' }] }),
  );
}

describe('buildGraph', () => {
  it('draws the flow, the nodes its edges reach, and missing targets', () => {
    const g = buildGraph(demo(), {}, 'demo');
    expect(g.module).toBe('tinymod');
    expect(g.nodes.map((n) => n.id)).toEqual(['feeder', 'ghost', 'other-sink', 'router-1', 'ticker-1']);
    const by = Object.fromEntries(g.nodes.map((n) => [n.id, n]));
    expect(by['ticker-1']).toMatchObject({ member: true, foreign: false, missing: false });
    expect(by['other-sink']).toMatchObject({ member: false, foreign: true, module: 'greeter' });
    expect(by.feeder).toMatchObject({ member: false, foreign: true, module: 'greeter' });
    expect(by.ghost).toMatchObject({ missing: true, foreign: true, module: '' });
    expect(by.ghost.ports).toEqual([{ name: 'in', label: 'in', side: 'left', source: false, target: true }]);
    expect(g.edges.map((e) => e.id).sort()).toEqual(['feeder/feed', 'router-1/router-loud', 'router-1/router-quiet', 'ticker-1/ticker-router']);
    // An edge between two nodes outside the flow is not drawn.
    expect(g.edges.find((e) => e.source === 'unrelated')).toBeUndefined();
  });

  it('marks flow members of another module', () => {
    const nodes = byName(
      node('a', { flow: 'f', module: 'm1' }),
      node('b', { flow: 'f', module: 'm1' }),
      node('c', { flow: 'f', module: 'm2' }),
    );
    const g = buildGraph(nodes, {}, 'f');
    expect(g.module).toBe('m1');
    expect(g.nodes.map((n) => [n.id, n.foreign])).toEqual([
      ['a', false],
      ['b', false],
      ['c', true],
    ]);
  });

  it('draws unlabelled nodes for (no flow)', () => {
    const g = buildGraph(byName(node('a'), node('b', { flow: 'x' })), {}, NO_FLOW);
    expect(g.nodes.map((n) => n.id)).toEqual(['a']);
  });

  it('puts handles on the published sides, leaving out system ports', () => {
    const g = buildGraph(demo(), {}, 'demo');
    const router = g.nodes.find((n) => n.id === 'router-1')!;
    expect(router.ports).toEqual([
      { name: 'in', label: 'In', side: 'left', source: false, target: true },
      { name: 'loud', label: 'Loud', side: 'right', source: true, target: false },
      { name: 'default', label: 'Default', side: 'bottom', source: true, target: false },
    ]);
    const ticker = g.nodes.find((n) => n.id === 'ticker-1')!;
    // out is published; in2 only exists because an edge arrives there.
    expect(ticker.ports.map((p) => [p.name, p.side, p.source, p.target])).toEqual([
      ['out', 'right', true, false],
      ['in2', 'left', false, true],
    ]);
  });

  it('takes ports from the module before the node publishes its own', () => {
    const modules = byName(module('tinymod', [{ name: 'debug', ports: inPort }]));
    const n = node('d', { flow: 'f' });
    expect(publishedPorts(n, modules)).toEqual(inPort);
    const g = buildGraph(byName(n), modules, 'f');
    expect(g.nodes[0].ports).toEqual([{ name: 'in', label: 'In', side: 'left', source: false, target: true }]);
  });

  it('finds the mapping of an edge on its target', () => {
    const nodes = byName(
      node('r', { flow: 'f', edges: [{ id: 'e', port: 'default', to: 'q.in' }] }),
      node('q', { flow: 'f', config: [{ port: 'in', from: 'r.default', configuration: { said: '{{$.text}}' } }] }),
    );
    const g = buildGraph(nodes, {}, 'f');
    expect(g.edges[0].mapping).toEqual({ said: '{{$.text}}' });
    expect(edgeMapping(nodes.q, 'in', 'r.other')).toBeUndefined();
  });

  it('changes its shape only when boxes, handles or edges do', () => {
    const a = graphShape(buildGraph(demo(), {}, 'demo'));
    const nodes = demo();
    nodes['ticker-1'] = { ...nodes['ticker-1'], status: { ...nodes['ticker-1'].status, error: 'x' } };
    expect(graphShape(buildGraph(nodes, {}, 'demo'))).toBe(a);
    nodes['ticker-1'] = { ...nodes['ticker-1'], spec: { ...nodes['ticker-1'].spec, edges: [] } };
    expect(graphShape(buildGraph(nodes, {}, 'demo'))).not.toBe(a);
  });
});

describe('ports and edges', () => {
  it('sides default to inputs left and sources right', () => {
    expect(portSide('', false)).toBe('left');
    expect(portSide(undefined, true)).toBe('right');
    expect(portSide('top', true)).toBe('top');
    expect(portSide('bottom', false)).toBe('bottom');
    expect(portSide('left', true)).toBe('left');
  });

  it('splits targets at the last dot', () => {
    expect(splitTarget('a.b.c.in')).toEqual({ node: 'a.b.c', port: 'in' });
    expect(splitTarget('nodot')).toEqual({ node: 'nodot', port: '' });
  });

  it('reads an edge’s rate from its target port', () => {
    const rates = { nodes: {}, ports: { 'router-1.in': 2.5 } };
    expect(edgeRate(rates, 'router-1', 'in')).toBe(2.5);
    expect(edgeRate(rates, 'router-1', 'other')).toBeUndefined();
  });
});
