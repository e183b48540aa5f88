import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from 'react';
import { ReactFlowProvider } from '@xyflow/react';
import { api, messageOf, pageExposed } from './api';
import { NO_FLOW, listFlows } from './flows';
import { buildGraph } from './graph';
import { addLocalEdge, applyEvent, applyLocalNode, emptyState, removeLocalEdge, type State } from './state';
import { useEventStream } from './stream';
import { FlowList } from './components/FlowList';
import { Palette } from './components/Palette';
import { ModuleBar } from './components/ModuleBar';
import { Canvas, type PendingConnection } from './components/Canvas';
import { SidePanel } from './components/SidePanel';
import { DebugPanel } from './components/DebugPanel';
import { MappingDialog } from './components/MappingDialog';
import type { NodeEdge, TinyNode } from './types';

export type Selection = { kind: 'node'; name: string } | { kind: 'edge'; source: string; edgeId: string } | null;

/** A press of a control button: the signal it made, or why it could not. */
export interface Press {
  signal?: string;
  error?: string;
}

type Action =
  | { kind: 'events'; events: [string, unknown][] }
  | { kind: 'local-node'; node: TinyNode }
  | { kind: 'local-delete-node'; name: string }
  | { kind: 'local-delete-edge'; node: string; id: string }
  | { kind: 'local-add-edge'; node: string; edge: NodeEdge };

function reduce(state: State, a: Action): State {
  switch (a.kind) {
    case 'events':
      return a.events.reduce((s, [event, data]) => applyEvent(s, event, data), state);
    case 'local-node':
      return applyLocalNode(state, a.node);
    case 'local-delete-node':
      return applyEvent(state, 'node', { type: 'delete', object: { metadata: { name: a.name } } });
    case 'local-delete-edge':
      return removeLocalEdge(state, a.node, a.id);
    case 'local-add-edge':
      return addLocalEdge(state, a.node, a.edge);
  }
}

function flowFromHash(): string | null {
  const m = /^#flow=(.+)$/.exec(window.location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

function isEditable(el: EventTarget | null): boolean {
  if (!(el instanceof HTMLElement)) return false;
  return el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName);
}

export function App() {
  const [state, dispatch] = useReducer(reduce, undefined, emptyState);
  // Events are applied in batches, at most every 50 ms: a busy debug node
  // sends many messages a second, and the page redraws once per batch.
  const queue = useRef<[string, unknown][]>([]);
  const flushTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const onEvent = useCallback((event: string, data: unknown) => {
    queue.current.push([event, data]);
    flushTimer.current ??= setTimeout(() => {
      flushTimer.current = undefined;
      const events = queue.current;
      queue.current = [];
      dispatch({ kind: 'events', events });
    }, 50);
  }, []);
  const live = useEventStream('/api/events', onEvent);

  const [selection, setSelection] = useState<Selection>(null);
  const [flow, setFlowState] = useState<string | null>(() => flowFromHash());
  const setFlow = useCallback((f: string) => {
    setFlowState(f);
    setSelection(null);
    history.replaceState(null, '', `#flow=${encodeURIComponent(f)}`);
  }, []);
  const flows = useMemo(() => listFlows(state.flows, state.nodes, flow ?? undefined), [state.flows, state.nodes, flow]);
  // Until one is chosen, draw the first flow that has nodes.
  const current = flow ?? (flows.find((f) => f.nodes > 0) ?? flows[0])?.key ?? NO_FLOW;

  // The flow drawn first stays drawn until another is chosen.
  useEffect(() => {
    if (flow === null && state.loaded) setFlowState(current);
  }, [flow, state.loaded, current]);

  const graph = useMemo(() => buildGraph(state.nodes, state.modules, current), [state.nodes, state.modules, current]);

  const [presses, setPresses] = useState<Record<string, Press>>({});
  const [controlValues, setControlValues] = useState<Record<string, Record<string, unknown>>>({});
  const [connecting, setConnecting] = useState<PendingConnection | null>(null);
  const [panelError, setPanelError] = useState('');

  // A selection whose object is gone is dropped.
  useEffect(() => {
    if (selection?.kind === 'node' && !graph.nodes.some((n) => n.id === selection.name)) setSelection(null);
    if (selection?.kind === 'edge' && !graph.edges.some((e) => e.source === selection.source && e.edgeId === selection.edgeId))
      setSelection(null);
  }, [graph, selection]);
  useEffect(() => setPanelError(''), [selection]);

  const press = useCallback(
    async (node: string, _action: string, data: Record<string, unknown>) => {
      setPresses((p) => ({ ...p, [node]: {} }));
      try {
        const res = await api.sendSignal(node, '_control', data);
        setPresses((p) => ({ ...p, [node]: { signal: res?.name } }));
      } catch (err) {
        setPresses((p) => ({ ...p, [node]: { error: messageOf(err) } }));
      }
    },
    [],
  );

  const deleteNode = useCallback(async (name: string) => {
    setPanelError('');
    try {
      await api.deleteNode(name);
      dispatch({ kind: 'local-delete-node', name });
      setSelection(null);
    } catch (err) {
      setPanelError(messageOf(err));
    }
  }, []);

  const deleteEdge = useCallback(async (source: string, id: string) => {
    setPanelError('');
    try {
      await api.deleteEdge(source, id);
      dispatch({ kind: 'local-delete-edge', node: source, id });
      setSelection(null);
    } catch (err) {
      setPanelError(messageOf(err));
    }
  }, []);

  // The Delete key removes what is selected (not while typing).
  const selectionRef = useRef(selection);
  selectionRef.current = selection;
  const dialogOpen = connecting !== null;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== 'Delete') return;
      if (isEditable(e.target) || dialogOpen) return;
      const sel = selectionRef.current;
      if (!sel) return;
      e.preventDefault();
      if (sel.kind === 'node') void deleteNode(sel.name);
      else void deleteEdge(sel.source, sel.edgeId);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [deleteNode, deleteEdge, dialogOpen]);

  const onCreated = useCallback((node: TinyNode) => {
    dispatch({ kind: 'local-node', node });
    if (node?.metadata?.name) setSelection({ kind: 'node', name: node.metadata.name });
  }, []);
  const onNodeSaved = useCallback((node: TinyNode) => dispatch({ kind: 'local-node', node }), []);

  const exposed = state.loaded ? state.exposed : pageExposed();

  return (
    <div className="app">
      {exposed && (
        <div className="exposed-banner" data-testid="exposed-banner" role="alert">
          This page is exposed beyond this machine
        </div>
      )}
      <header className="top">
        <div className="brand">
          <strong>tinymod</strong>
          {state.namespace && <span className="muted"> · {state.namespace}</span>}
        </div>
        <ModuleBar state={state} />
        <div className={`stream ${live ? 'live' : 'down'}`} title="event stream">
          <span className="dot" />
          <span data-testid="stream-status">{live ? 'live' : 'disconnected'}</span>
        </div>
      </header>
      <aside className="left">
        <FlowList flows={flows} current={current} onSelect={setFlow} />
        <Palette modules={state.modules} flow={current} onCreated={onCreated} />
      </aside>
      <main className="canvas">
        {!state.loaded && <div className="canvas-note">waiting for the server…</div>}
        <ReactFlowProvider>
          <Canvas
            flow={current}
            graph={graph}
            state={state}
            selection={selection}
            onSelect={setSelection}
            presses={presses}
            controlValues={controlValues}
            onPress={press}
            onConnect={setConnecting}
          />
        </ReactFlowProvider>
      </main>
      <aside className="right">
        <SidePanel
          state={state}
          graph={graph}
          selection={selection}
          controlValues={controlValues}
          setControlValues={setControlValues}
          onDeleteNode={deleteNode}
          onDeleteEdge={deleteEdge}
          onNodeSaved={onNodeSaved}
          onConnect={setConnecting}
          error={panelError}
        />
      </aside>
      <footer className="bottom">
        <DebugPanel entries={state.debug} />
      </footer>
      {connecting && (
        <MappingDialog
          connection={connecting}
          onClose={() => setConnecting(null)}
          onCreated={(source, edge) => {
            dispatch({ kind: 'local-add-edge', node: source, edge });
            setSelection({ kind: 'edge', source, edgeId: edge.id });
          }}
        />
      )}
    </div>
  );
}
