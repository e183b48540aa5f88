// The graph of a flow: which boxes, which handles on which side, which edges.

import { flowOf } from './flows';
import {
  SYSTEM_PORTS,
  type PortPosition,
  type PortStatus,
  type Rates,
  type TinyModule,
  type TinyNode,
} from './types';

export type Side = 'left' | 'right' | 'top' | 'bottom';

export interface GraphPort {
  name: string;
  label: string;
  side: Side;
  /** Drawn as a source handle (edges leave from it). */
  source: boolean;
  /** Drawn as a target handle (edges arrive at it). */
  target: boolean;
}

export interface GraphNode {
  /** The node's name, also its id in the drawing. */
  id: string;
  /** A target that no TinyNode exists for. */
  missing: boolean;
  /** Not a member of the drawn flow, or of another module than the flow's. */
  foreign: boolean;
  /** Carries the drawn flow's label (or, for "(no flow)", no label). */
  member: boolean;
  module: string;
  component: string;
  ports: GraphPort[];
  node?: TinyNode;
}

export interface GraphEdge {
  /** Unique in the drawing: "<source node>/<edge id>". */
  id: string;
  edgeId: string;
  source: string;
  sourcePort: string;
  target: string;
  targetPort: string;
  /** The mapping on the target node for messages along this edge, if any. */
  mapping?: unknown;
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
  /** The module most of the flow's nodes belong to. */
  module: string;
}

/** splitTarget splits "<node>.<port>" at its last dot. */
export function splitTarget(to: string): { node: string; port: string } {
  const i = to.lastIndexOf('.');
  if (i < 0) return { node: to, port: '' };
  return { node: to.slice(0, i), port: to.slice(i + 1) };
}

/** portSide is where a port's handle goes: its published position, else inputs left and sources right. */
export function portSide(position: PortPosition | undefined, source: boolean): Side {
  switch (position) {
    case 'left':
    case 'right':
    case 'top':
    case 'bottom':
      return position;
    default:
      return source ? 'right' : 'left';
  }
}

/** The ports a node publishes, or, before it does, its component's as its module lists them. */
export function publishedPorts(node: TinyNode, modules: Record<string, TinyModule>): PortStatus[] {
  const own = node.status?.ports;
  if (own && own.length > 0) return own;
  const comp = modules[node.spec.module]?.status?.components?.find((c) => c.name === node.spec.component);
  return comp?.ports ?? [];
}

/** The schema of one of a node's ports, if published. */
export function portSchema(node: TinyNode, modules: Record<string, TinyModule>, port: string) {
  return publishedPorts(node, modules).find((p) => p.name === port)?.schema;
}

/** edgeRate is an edge's messages per second: the rate into its target port. */
export function edgeRate(rates: Rates, target: string, targetPort: string): number | undefined {
  return rates.ports?.[`${target}.${targetPort}`];
}

/** The mapping a target node holds for messages from "<source>.<port>". */
export function edgeMapping(target: TinyNode | undefined, targetPort: string, from: string): unknown {
  return target?.spec.ports?.find((p) => p.port === targetPort && p.from === from)?.configuration;
}

function mostCommon(values: string[]): string {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best = '';
  let n = 0;
  for (const [v, c] of [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    if (c > n) {
      best = v;
      n = c;
    }
  }
  return best;
}

/**
 * buildGraph draws a flow: its nodes, the nodes its edges reach or come from
 * (marked foreign when they are outside the flow or of another module), a
 * "missing" box for each edge target that does not exist, and the edges with
 * at least one end in the flow.
 */
export function buildGraph(
  nodes: Record<string, TinyNode>,
  modules: Record<string, TinyModule>,
  flow: string,
): Graph {
  const members = Object.values(nodes)
    .filter((n) => flowOf(n) === flow)
    .sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));
  const memberNames = new Set(members.map((n) => n.metadata.name));
  const flowModule = mostCommon(members.map((n) => n.spec.module));

  const edges: GraphEdge[] = [];
  const drawn = new Set<string>(memberNames);
  const consider = (source: TinyNode) => {
    const sname = source.metadata.name;
    for (const e of source.spec.edges ?? []) {
      const t = splitTarget(e.to);
      if (!memberNames.has(sname) && !memberNames.has(t.node)) continue;
      drawn.add(sname);
      drawn.add(t.node);
      edges.push({
        id: `${sname}/${e.id}`,
        edgeId: e.id,
        source: sname,
        sourcePort: e.port,
        target: t.node,
        targetPort: t.port,
        mapping: edgeMapping(nodes[t.node], t.port, `${sname}.${e.port}`),
      });
    }
  };
  for (const n of members) consider(n);
  for (const n of Object.values(nodes)) if (!memberNames.has(n.metadata.name)) consider(n);

  const out: GraphNode[] = [];
  for (const name of [...drawn].sort()) {
    const node = nodes[name];
    const outgoing = edges.filter((e) => e.source === name);
    const incoming = edges.filter((e) => e.target === name);
    const ports: GraphPort[] = [];
    const byName = new Map<string, GraphPort>();
    const add = (p: GraphPort) => {
      const have = byName.get(p.name);
      if (have) {
        have.source ||= p.source;
        have.target ||= p.target;
        return;
      }
      byName.set(p.name, p);
      ports.push(p);
    };
    if (node) {
      for (const p of publishedPorts(node, modules)) {
        if (SYSTEM_PORTS.has(p.name)) continue;
        add({
          name: p.name,
          label: p.label || p.name,
          side: portSide(p.position, !!p.source),
          source: !!p.source,
          target: !p.source,
        });
      }
    }
    // Ports an edge uses get a handle even when nothing publishes them.
    for (const e of outgoing) {
      add({ name: e.sourcePort, label: e.sourcePort, side: 'right', source: true, target: false });
    }
    for (const e of incoming) {
      add({ name: e.targetPort, label: e.targetPort, side: 'left', source: false, target: true });
    }
    const module = node?.spec.module ?? '';
    const member = memberNames.has(name);
    out.push({
      id: name,
      missing: !node,
      member,
      foreign: !node || !member || module !== flowModule,
      module,
      component: node?.spec.component ?? '',
      ports,
      node,
    });
  }
  return { nodes: out, edges, module: flowModule };
}

/** A string that changes exactly when the drawing's shape (boxes, handles, edges) does. */
export function graphShape(g: Graph): string {
  const nodes = g.nodes.map(
    (n) => `${n.id}${n.missing ? '?' : ''}[${n.ports.map((p) => `${p.name}:${p.side}:${+p.source}${+p.target}`).join(',')}]`,
  );
  const edges = g.edges.map((e) => `${e.id}>${e.target}.${e.targetPort}`);
  return `${nodes.join(';')}|${edges.join(';')}`;
}
