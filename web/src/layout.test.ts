import { describe, expect, it } from 'vitest';
import ELK from 'elkjs/lib/elk.bundled.js';
import { buildGraph } from './graph';
import { bounds, elkGraph, elkPortId, inside, layout, placeNew } from './layout';
import { byName, node } from './testutil';

const nodes = byName(
  node('a', { flow: 'f', ports: [{ name: 'out', source: true }], edges: [{ id: 'e1', port: 'out', to: 'b.in' }] }),
  node('b', { flow: 'f', ports: [{ name: 'in' }, { name: 'out', source: true }], edges: [{ id: 'e2', port: 'out', to: 'c.in' }] }),
  node('c', { flow: 'f', ports: [{ name: 'in' }, { name: 'err', source: true, position: 'bottom' }] }),
);

describe('layout', () => {
  it('describes ports on their sides and edges between them', () => {
    const g = buildGraph(nodes, {}, 'f');
    const elk = elkGraph(g, { a: { width: 240, height: 100 } });
    expect(elk.children?.map((c) => [c.id, c.width, c.height])).toEqual([
      ['a', 240, 100],
      ['b', 240, 164],
      ['c', 240, 164],
    ]);
    const c = elk.children!.find((x) => x.id === 'c')!;
    expect(c.ports?.map((p) => [p.id, p.layoutOptions?.['elk.port.side']])).toEqual([
      [elkPortId('c', 'in', 'target'), 'WEST'],
      [elkPortId('c', 'err', 'source'), 'SOUTH'],
    ]);
    expect(elk.edges?.map((e) => [e.sources[0], e.targets[0]])).toEqual([
      [elkPortId('a', 'out', 'source'), elkPortId('b', 'in', 'target')],
      [elkPortId('b', 'out', 'source'), elkPortId('c', 'in', 'target')],
    ]);
  });

  it('places sources left of their targets', async () => {
    const g = buildGraph(nodes, {}, 'f');
    const pos = await layout(new ELK(), g, {});
    expect(pos.a.x).toBeLessThan(pos.b.x);
    expect(pos.b.x).toBeLessThan(pos.c.x);
  });

  it('lays out a missing target too', async () => {
    const g = buildGraph(byName(node('a', { flow: 'f', edges: [{ id: 'e', port: 'out', to: 'gone.in' }] })), {}, 'f');
    const pos = await layout(new ELK(), g, {});
    expect(Object.keys(pos).sort()).toEqual(['a', 'gone']);
    expect(pos.a.x).toBeLessThan(pos.gone.x);
  });
});

describe('placeNew', () => {
  const size = { width: 100, height: 50 };
  it('takes the first free spot in view, away from the others', () => {
    const view = { x: 0, y: 0, width: 500, height: 300 };
    const rects = [{ x: 0, y: 0, width: 200, height: 100 }];
    const p = placeNew(rects, size, view);
    expect(inside({ ...p, ...size }, view)).toBe(true);
    expect(p.x >= 230 || p.y >= 130).toBe(true);
  });

  it('goes below everything when the view is full', () => {
    const view = { x: 0, y: 0, width: 300, height: 200 };
    const rects = [{ x: 0, y: 0, width: 300, height: 200 }];
    expect(placeNew(rects, size, view)).toEqual({ x: 0, y: 260 });
  });

  it('starts at the view when nothing is drawn', () => {
    expect(placeNew([], size, { x: 10, y: 20, width: 50, height: 20 })).toEqual({ x: 40, y: 50 });
    expect(placeNew([], size, null)).toEqual({ x: 0, y: 0 });
  });

  it('bounds rectangles', () => {
    expect(bounds([])).toBeNull();
    expect(bounds([{ x: 0, y: 5, width: 10, height: 10 }, { x: -5, y: 0, width: 1, height: 1 }])).toEqual({ x: -5, y: 0, width: 15, height: 15 });
  });
});
