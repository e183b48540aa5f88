// The page's picture of the cluster, and how each server event changes it.

import type {
  DebugEntry,
  Leadership,
  NodeEdge,
  ObjectEvent,
  Rates,
  Snapshot,
  TinyFlow,
  TinyModule,
  TinyNode,
  TinySignal,
} from './types';

export interface SignalOutcome {
  phase: string;
  lastError?: string;
}

/** How many debug messages are kept. */
export const DEBUG_KEEP = 200;
/** How many deleted signals are remembered (a delivered signal is deleted). */
const GONE_KEEP = 500;

export interface State {
  /** Whether a snapshot has arrived since the page loaded. */
  loaded: boolean;
  namespace: string;
  exposed: boolean;
  nodes: Record<string, TinyNode>;
  modules: Record<string, TinyModule>;
  flows: Record<string, TinyFlow>;
  signals: Record<string, TinySignal>;
  /** Signals that were deleted, by name, with their last phase and error. */
  goneSignals: Record<string, SignalOutcome>;
  leadership: Leadership;
  rates: Rates;
  /** Newest first. */
  debug: DebugEntry[];
}

export function emptyState(): State {
  return {
    loaded: false,
    namespace: '',
    exposed: false,
    nodes: {},
    modules: {},
    flows: {},
    signals: {},
    goneSignals: {},
    leadership: { modules: {} },
    rates: { nodes: {}, ports: {} },
    debug: [],
  };
}

function byName<T extends { metadata: { name: string } }>(list: T[] | null | undefined): Record<string, T> {
  const out: Record<string, T> = {};
  for (const o of list ?? []) {
    if (o?.metadata?.name) out[o.metadata.name] = o;
  }
  return out;
}

function applyObject<T extends { metadata: { name: string } }>(
  current: Record<string, T>,
  ev: ObjectEvent<T>,
): Record<string, T> {
  const name = ev?.object?.metadata?.name;
  if (!name) return current;
  const next = { ...current };
  if (ev.type === 'delete') delete next[name];
  else next[name] = ev.object;
  return next;
}

function normalizeLeadership(l: Partial<Leadership> | null | undefined): Leadership {
  return { modules: l?.modules ?? {} };
}

function normalizeRates(r: Partial<Rates> | null | undefined): Rates {
  return { at: r?.at, nodes: r?.nodes ?? {}, ports: r?.ports ?? {} };
}

/** The phase a signal is in, Pending when it has none yet. */
export function signalPhase(s: TinySignal): string {
  return s.status?.phase || 'Pending';
}

/**
 * applyEvent returns the state after one server event: a snapshot replaces all
 * of it, object events upsert or delete by metadata.name, leadership and rates
 * replace theirs, and a debug message is put first.
 */
export function applyEvent(state: State, event: string, data: unknown): State {
  switch (event) {
    case 'snapshot': {
      const s = data as Snapshot;
      const signals = byName(s.signals);
      // Signals that were known and are gone were delivered (or removed) while
      // the stream was down.
      const goneSignals = { ...state.goneSignals };
      for (const [name, sig] of Object.entries(state.signals)) {
        if (!signals[name]) goneSignals[name] = outcome(sig);
      }
      return {
        loaded: true,
        namespace: s.namespace ?? '',
        exposed: !!s.exposed,
        nodes: byName(s.nodes),
        modules: byName(s.modules),
        flows: byName(s.flows),
        signals,
        goneSignals: trimGone(goneSignals),
        leadership: normalizeLeadership(s.leadership),
        rates: normalizeRates(s.rates),
        debug: [...(s.debug ?? [])].reverse().slice(0, DEBUG_KEEP),
      };
    }
    case 'node': {
      const nodes = applyObject(state.nodes, data as ObjectEvent<TinyNode>);
      return nodes === state.nodes ? state : { ...state, nodes };
    }
    case 'module': {
      const modules = applyObject(state.modules, data as ObjectEvent<TinyModule>);
      return modules === state.modules ? state : { ...state, modules };
    }
    case 'flow': {
      const flows = applyObject(state.flows, data as ObjectEvent<TinyFlow>);
      return flows === state.flows ? state : { ...state, flows };
    }
    case 'signal': {
      const ev = data as ObjectEvent<TinySignal>;
      const name = ev?.object?.metadata?.name;
      if (!name) return state;
      if (ev.type === 'delete') {
        const last = state.signals[name] ?? ev.object;
        return {
          ...state,
          signals: applyObject(state.signals, ev),
          goneSignals: trimGone({ ...state.goneSignals, [name]: outcome(last) }),
        };
      }
      return { ...state, signals: applyObject(state.signals, ev) };
    }
    case 'leadership':
      return { ...state, leadership: normalizeLeadership(data as Leadership) };
    case 'rates':
      return { ...state, rates: normalizeRates(data as Rates) };
    case 'debug':
      return { ...state, debug: [data as DebugEntry, ...state.debug].slice(0, DEBUG_KEEP) };
    default:
      return state;
  }
}

function outcome(s: TinySignal): SignalOutcome {
  return { phase: signalPhase(s), lastError: s.status?.lastError || undefined };
}

function trimGone(gone: Record<string, SignalOutcome>): Record<string, SignalOutcome> {
  const keys = Object.keys(gone);
  if (keys.length <= GONE_KEEP) return gone;
  const out: Record<string, SignalOutcome> = {};
  for (const k of keys.slice(keys.length - GONE_KEEP)) out[k] = gone[k];
  return out;
}

/**
 * The phase to show for a signal the page created: its phase while it exists;
 * once deleted, Delivered (a delivered signal is deleted) unless it had failed.
 */
export function trackedPhase(state: State, name: string): SignalOutcome {
  const s = state.signals[name];
  if (s) return outcome(s);
  const gone = state.goneSignals[name];
  if (gone?.phase === 'Failed') return gone;
  if (gone) return { phase: 'Delivered' };
  return { phase: 'Pending' };
}

function version(n: TinyNode | undefined): number {
  const v = Number(n?.metadata.resourceVersion);
  return Number.isFinite(v) ? v : -1;
}

/**
 * applyLocalNode puts a node the server answered with into the state at once,
 * unless the stream already brought a newer version of it.
 */
export function applyLocalNode(state: State, node: TinyNode | undefined): State {
  const name = node?.metadata?.name;
  if (!node || !name) return state;
  const have = state.nodes[name];
  if (have && version(have) > version(node) && version(node) >= 0) return state;
  return { ...state, nodes: { ...state.nodes, [name]: node } };
}

/** removeLocalEdge drops an edge the server deleted, before the stream says so. */
export function removeLocalEdge(state: State, node: string, id: string): State {
  const have = state.nodes[node];
  if (!have) return state;
  const edges = (have.spec.edges ?? []).filter((e) => e.id !== id);
  return { ...state, nodes: { ...state.nodes, [node]: { ...have, spec: { ...have.spec, edges } } } };
}

/** addLocalEdge adds an edge the server created, before the stream says so. */
export function addLocalEdge(state: State, node: string, edge: NodeEdge): State {
  const have = state.nodes[node];
  if (!have || (have.spec.edges ?? []).some((e) => e.id === edge.id)) return state;
  const edges = [...(have.spec.edges ?? []), edge];
  return { ...state, nodes: { ...state.nodes, [node]: { ...have, spec: { ...have.spec, edges } } } };
}
