import { describe, expect, it } from 'vitest';
import { NO_FLOW, flowOf, listFlows, nodesOfFlow } from './flows';
import { byName, node } from './testutil';

describe('listFlows', () => {
  it('lists TinyFlows, labels on nodes and (no flow), by name', () => {
    const flows = byName({ metadata: { name: 'zeta' }, spec: { description: 'empty one' } }, { metadata: { name: 'demo' } });
    const nodes = byName(node('a', { flow: 'demo' }), node('b', { flow: 'demo' }), node('c', { flow: 'alpha' }), node('d'));
    const list = listFlows(flows, nodes);
    expect(list.map((f) => f.key)).toEqual(['alpha', 'demo', 'zeta', NO_FLOW]);
    expect(list.map((f) => f.nodes)).toEqual([1, 2, 0, 1]);
    expect(list.find((f) => f.key === 'zeta')).toMatchObject({ object: true, description: 'empty one' });
    expect(list.find((f) => f.key === 'alpha')?.object).toBe(false);
    expect(list[3].label).toBe('(no flow)');
  });

  it('leaves out (no flow) when every node has a flow', () => {
    const list = listFlows({}, byName(node('a', { flow: 'demo' })));
    expect(list.map((f) => f.key)).toEqual(['demo']);
  });

  it('offers (no flow) when there is nothing at all', () => {
    expect(listFlows({}, {}).map((f) => f.key)).toEqual([NO_FLOW]);
  });

  it('lists a flow being started', () => {
    expect(listFlows({}, byName(node('a', { flow: 'demo' })), 'new').map((f) => f.key)).toEqual(['demo', 'new']);
  });

  it('puts a node in its label’s flow', () => {
    expect(flowOf(node('a', { flow: 'x' }))).toBe('x');
    expect(flowOf(node('a'))).toBe(NO_FLOW);
    const nodes = byName(node('a', { flow: 'x' }), node('b'));
    expect(nodesOfFlow(nodes, NO_FLOW).map((n) => n.metadata.name)).toEqual(['b']);
  });
});
