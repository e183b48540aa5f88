// Automatic layout with ELK's layered algorithm: sources left of targets,
// ports fixed on the sides the handles are drawn on.

import type { ElkNode, ElkPort, ElkExtendedEdge } from 'elkjs/lib/elk-api';
import type { Graph, Side } from './graph';

export interface Size {
  width: number;
  height: number;
}

export interface Position {
  x: number;
  y: number;
}

/** The part of ELK the layout uses (the worker-backed API in the page, the bundled one in tests). */
export interface ElkLike {
  layout(graph: ElkNode): Promise<ElkNode>;
}

const ELK_SIDE: Record<Side, string> = { left: 'WEST', right: 'EAST', top: 'NORTH', bottom: 'SOUTH' };

/** The ELK id of a node's port handle. */
export function elkPortId(node: string, port: string, kind: 'source' | 'target'): string {
  return `${node}\u0000${port}\u0000${kind}`;
}

/** A box's size before it is measured: a header, a row per port, the status lines. */
export function estimateSize(n: Graph['nodes'][number]): Size {
  const left = n.ports.filter((p) => p.side === 'left').length;
  const right = n.ports.filter((p) => p.side === 'right').length;
  const rows = Math.max(left, right, 1);
  return { width: 240, height: 64 + rows * 20 + 80 };
}

/** elkGraph describes a graph to ELK, with the boxes' sizes where known. */
export function elkGraph(g: Graph, sizes: Record<string, Size | undefined>): ElkNode {
  const children: ElkNode[] = g.nodes.map((n) => {
    const size = sizes[n.id] ?? estimateSize(n);
    const ports: ElkPort[] = [];
    let index = 0;
    for (const p of n.ports) {
      for (const kind of ['target', 'source'] as const) {
        if (kind === 'source' ? !p.source : !p.target) continue;
        ports.push({
          id: elkPortId(n.id, p.name, kind),
          width: 8,
          height: 8,
          layoutOptions: { 'elk.port.side': ELK_SIDE[p.side], 'elk.port.index': String(index++) },
        });
      }
    }
    return {
      id: n.id,
      width: size.width,
      height: size.height,
      ports,
      layoutOptions: { 'elk.portConstraints': 'FIXED_SIDE' },
    };
  });
  const ids = new Set(g.nodes.map((n) => n.id));
  const edges: ElkExtendedEdge[] = g.edges
    .filter((e) => ids.has(e.source) && ids.has(e.target))
    .map((e) => ({
      id: e.id,
      sources: [elkPortId(e.source, e.sourcePort, 'source')],
      targets: [elkPortId(e.target, e.targetPort, 'target')],
    }));
  return {
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'RIGHT',
      'elk.spacing.nodeNode': '40',
      'elk.layered.spacing.nodeNodeBetweenLayers': '90',
      'elk.spacing.componentComponent': '60',
      'elk.layered.nodePlacement.strategy': 'BRANDES_KOEPF',
      'elk.padding': '[top=20,left=20,bottom=20,right=20]',
    },
    children,
    edges,
  };
}

/** layout runs ELK and returns each box's top-left corner. */
export async function layout(
  elk: ElkLike,
  g: Graph,
  sizes: Record<string, Size | undefined>,
): Promise<Record<string, Position>> {
  const out = await elk.layout(elkGraph(g, sizes));
  const positions: Record<string, Position> = {};
  for (const c of out.children ?? []) positions[c.id] = { x: c.x ?? 0, y: c.y ?? 0 };
  return positions;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

function overlaps(a: Rect, b: Rect, gap: number): boolean {
  return !(
    a.x + a.width + gap <= b.x ||
    b.x + b.width + gap <= a.x ||
    a.y + a.height + gap <= b.y ||
    b.y + b.height + gap <= a.y
  );
}

/** bounds is the smallest rectangle holding every rect, or null for none. */
export function bounds(rects: Rect[]): Rect | null {
  if (rects.length === 0) return null;
  const x = Math.min(...rects.map((r) => r.x));
  const y = Math.min(...rects.map((r) => r.y));
  const right = Math.max(...rects.map((r) => r.x + r.width));
  const bottom = Math.max(...rects.map((r) => r.y + r.height));
  return { x, y, width: right - x, height: bottom - y };
}

/** inside says whether r lies wholly within view. */
export function inside(r: Rect, view: Rect): boolean {
  return r.x >= view.x && r.y >= view.y && r.x + r.width <= view.x + view.width && r.y + r.height <= view.y + view.height;
}

/**
 * placeNew finds where a box added to a drawn flow goes without moving any
 * other: the first free spot in the visible area (row by row from the top
 * left), else below everything.
 */
export function placeNew(rects: Rect[], size: Size, view: Rect | null, gap = 30): Position {
  const free = (x: number, y: number) => rects.every((r) => !overlaps({ x, y, ...size }, r, gap));
  if (view && view.width > 0 && view.height > 0) {
    const step = Math.max(20, Math.min(view.width, view.height) / 40);
    for (let y = view.y + gap; y + size.height <= view.y + view.height - gap; y += step) {
      for (let x = view.x + gap; x + size.width <= view.x + view.width - gap; x += step) {
        if (free(x, y)) return { x: Math.round(x), y: Math.round(y) };
      }
    }
  }
  const b = bounds(rects);
  if (!b) return view ? { x: Math.round(view.x + gap), y: Math.round(view.y + gap) } : { x: 0, y: 0 };
  return { x: Math.round(b.x), y: Math.round(b.y + b.height + 2 * gap) };
}
