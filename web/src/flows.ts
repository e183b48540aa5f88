// Flows: TinyFlow objects, the flow label's values on nodes, and "(no flow)".

import { FLOW_LABEL, type TinyFlow, type TinyNode } from './types';

/** The key of the flow of unlabelled nodes (its list entry is flow-item-_none). */
export const NO_FLOW = '_none';

export interface FlowEntry {
  /** The flow's name, or NO_FLOW. */
  key: string;
  label: string;
  description?: string;
  /** How many nodes carry the flow's label. */
  nodes: number;
  /** Whether a TinyFlow object exists for it. */
  object: boolean;
}

/** The flow a node belongs to: its label, or NO_FLOW. */
export function flowOf(node: TinyNode): string {
  return node.metadata.labels?.[FLOW_LABEL] || NO_FLOW;
}

/**
 * listFlows returns every TinyFlow and every distinct flow label on nodes, by
 * name, then "(no flow)" when some node has no label (or when there is no flow
 * at all, so that a node can still be added). `extra` names a flow to list even
 * when nothing holds it yet (the one being built).
 */
export function listFlows(
  flows: Record<string, TinyFlow>,
  nodes: Record<string, TinyNode>,
  extra?: string,
): FlowEntry[] {
  const entries = new Map<string, FlowEntry>();
  for (const f of Object.values(flows)) {
    entries.set(f.metadata.name, {
      key: f.metadata.name,
      label: f.metadata.name,
      description: f.spec?.description,
      nodes: 0,
      object: true,
    });
  }
  let unlabelled = 0;
  for (const n of Object.values(nodes)) {
    const f = flowOf(n);
    if (f === NO_FLOW) {
      unlabelled++;
      continue;
    }
    const e = entries.get(f);
    if (e) e.nodes++;
    else entries.set(f, { key: f, label: f, nodes: 1, object: false });
  }
  if (extra && extra !== NO_FLOW && !entries.has(extra)) {
    entries.set(extra, { key: extra, label: extra, nodes: 0, object: false });
  }
  const out = [...entries.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  if (unlabelled > 0 || out.length === 0 || extra === NO_FLOW) {
    out.push({ key: NO_FLOW, label: '(no flow)', nodes: unlabelled, object: false });
  }
  return out;
}

/** The nodes of a flow. */
export function nodesOfFlow(nodes: Record<string, TinyNode>, flow: string): TinyNode[] {
  return Object.values(nodes).filter((n) => flowOf(n) === flow);
}
