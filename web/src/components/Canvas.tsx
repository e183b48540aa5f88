import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  Background,
  ControlButton,
  Controls,
  MarkerType,
  ReactFlow,
  useNodesState,
  useReactFlow,
  type Connection,
  type NodeChange,
  type Edge,
  type Node,
} from '@xyflow/react';
import { controlSpec } from '../control';
import { edgeRate, portSchema, type Graph, type GraphNode } from '../graph';
import { bounds, estimateSize, inside, layout, placeNew, type Position, type Rect, type Size } from '../layout';
import { getElk } from '../elk';
import { trackedPhase, type State } from '../state';
import type { NodeRate } from '../types';
import type { Press, Selection } from '../App';
import { NodeBox, type NodeBoxData } from './NodeBox';
import { RateEdge, type RateEdgeData } from './RateEdge';

export interface PendingConnection {
  source: string;
  sourcePort: string;
  target: string;
  targetPort: string;
}

export type BoxNode = Node<NodeBoxData, 'box'>;
export type RateEdgeT = Edge<RateEdgeData, 'rate'>;

const nodeTypes = { box: NodeBox };
const edgeTypes = { rate: RateEdge };

interface Props {
  flow: string;
  graph: Graph;
  state: State;
  selection: Selection;
  onSelect: (s: Selection) => void;
  presses: Record<string, Press>;
  controlValues: Record<string, Record<string, unknown>>;
  onPress: (node: string, action: string, data: Record<string, unknown>) => void;
  onConnect: (c: PendingConnection) => void;
}

function phaseText(state: State, press: Press | undefined): string | undefined {
  if (!press) return undefined;
  if (press.error) return press.error;
  if (!press.signal) return 'Sending';
  const { phase, lastError } = trackedPhase(state, press.signal);
  return phase === 'Failed' && lastError ? `Failed: ${lastError}` : phase;
}

function boxData(g: GraphNode, props: Props): NodeBoxData {
  const { state } = props;
  const control = g.node ? controlSpec(portSchema(g.node, state.modules, '_control')) : null;
  const rate: NodeRate | undefined = state.rates.nodes[g.id];
  return {
    g,
    rate,
    control,
    phase: phaseText(state, props.presses[g.id]),
    values: props.controlValues[g.id],
    onPress: props.onPress,
  };
}

/**
 * The flow's drawing. A flow is laid out by ELK when it is first drawn (and
 * when many nodes arrive at once, or on Tidy); a node or two added later take
 * a free spot in view, so nothing on screen moves under the pointer.
 */
export function Canvas(props: Props) {
  const { flow, graph, state, selection, onSelect, onConnect } = props;
  const { fitView, fitBounds, getViewport } = useReactFlow();
  const [nodes, setNodes, onNodesChange] = useNodesState<BoxNode>([]);
  const nodesRef = useRef(nodes);
  nodesRef.current = nodes;
  const wrapper = useRef<HTMLDivElement>(null);
  // Where each box of the drawn flow goes; boxes with none are laid out by ELK.
  const pos = useRef<Record<string, Position>>({});
  const drawnFlow = useRef<string | null>(null);
  const [tidy, setTidy] = useState(0);
  const [elkTick, setElkTick] = useState(0);
  const elkRunning = useRef(false);
  const fitPending = useRef(false);

  const onNodesChangeKeep = useCallback(
    (changes: NodeChange<BoxNode>[]) => {
      for (const c of changes) if (c.type === 'position' && c.position) pos.current[c.id] = c.position;
      onNodesChange(changes);
    },
    [onNodesChange],
  );

  // The visible part of the flow, in flow coordinates.
  const visible = useCallback((): Rect | null => {
    const el = wrapper.current;
    if (!el || el.clientWidth === 0) return null;
    const { x, y, zoom } = getViewport();
    // Less the strip on the left that the zoom buttons cover.
    const controls = 60;
    return { x: (controls - x) / zoom, y: -y / zoom, width: (el.clientWidth - controls) / zoom, height: el.clientHeight / zoom };
  }, [getViewport]);

  // Boxes follow the graph and the live data; a new box gets its place here.
  const selectedNode = selection?.kind === 'node' ? selection.name : null;
  useEffect(() => {
    if (drawnFlow.current !== flow) {
      drawnFlow.current = flow;
      pos.current = {};
    }
    const fresh = graph.nodes.filter((g) => !pos.current[g.id]);
    const placed = graph.nodes.length - fresh.length;
    let fit: Rect | null = null;
    // A node or two added to a drawn flow take a free spot; more wait for ELK.
    if (fresh.length > 0 && fresh.length < 3 && placed > 0) {
      const measured = new Map(nodesRef.current.map((n) => [n.id, n.measured]));
      const rects: Rect[] = graph.nodes
        .filter((g) => pos.current[g.id])
        .map((g) => {
          const m = measured.get(g.id);
          const size = m?.width && m?.height ? { width: m.width, height: m.height } : estimateSize(g);
          return { ...pos.current[g.id], ...size };
        });
      const view = visible();
      for (const g of fresh) {
        const size = estimateSize(g);
        const p = placeNew(rects, size, view);
        pos.current[g.id] = p;
        const r = { ...p, ...size };
        rects.push(r);
        if (view && !inside(r, view)) fit = bounds(rects);
      }
    }
    setNodes((prev) => {
      const old = new Map(prev.map((n) => [n.id, n]));
      return graph.nodes.map((g, i): BoxNode => {
        const before = old.get(g.id);
        const at = pos.current[g.id];
        return {
          ...(before ?? {}),
          id: g.id,
          type: 'box',
          position: at ?? before?.position ?? { x: (i % 6) * 280, y: Math.floor(i / 6) * 220 },
          className: at || (before && before.className !== 'unplaced') ? undefined : 'unplaced',
          data: boxData(g, props),
          selected: g.id === selectedNode,
          deletable: false,
        };
      });
    });
    if (fit) void fitBounds(fit, { padding: 0.1, duration: 0 });
    // props carries the live data the boxes show; these are the parts of it they read.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [graph, flow, tidy, state.rates, state.modules, state.signals, state.goneSignals, props.presses, props.controlValues, selectedNode, setNodes, visible, fitBounds]);

  // ELK lays the flow out while some box has no place, once all are measured;
  // then the view fits them.
  useEffect(() => {
    if (elkRunning.current || !graph.nodes.some((g) => !pos.current[g.id])) return;
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const sizes: Record<string, Size> = {};
    for (const g of graph.nodes) {
      const m = byId.get(g.id)?.measured;
      if (!m?.width || !m?.height) return;
      sizes[g.id] = { width: m.width, height: m.height };
    }
    elkRunning.current = true;
    const forFlow = flow;
    layout(getElk(), graph, sizes)
      .then((found) => {
        if (drawnFlow.current !== forFlow) return;
        pos.current = { ...pos.current, ...found };
        setNodes((prev) => prev.map((n) => (pos.current[n.id] ? { ...n, position: pos.current[n.id], className: undefined } : n)));
        fitPending.current = true;
      })
      .catch((err) => {
        console.error('layout', err);
        // Without ELK, boxes stay where they were put.
        for (const n of nodesRef.current) pos.current[n.id] ??= n.position;
        setNodes((prev) => prev.map((n) => ({ ...n, className: undefined })));
      })
      .finally(() => {
        elkRunning.current = false;
        // Look again: more may have arrived meanwhile.
        setElkTick((t) => t + 1);
      });
  }, [elkTick, nodes, graph, flow, setNodes, fitView]);

  // After a layout is drawn (React Flow, a child, has its nodes by now), fit the view.
  useEffect(() => {
    if (!fitPending.current || nodes.some((n) => n.className === 'unplaced')) return;
    fitPending.current = false;
    void fitView({ padding: 0.12, duration: 0, maxZoom: 1.2 });
  }, [nodes, fitView]);

  const unplacedKey = nodes
    .filter((n) => n.className === 'unplaced')
    .map((n) => n.id)
    .join('\n');
  const unplaced = useMemo(() => new Set(unplacedKey ? unplacedKey.split('\n') : []), [unplacedKey]);
  const selectedEdge = selection?.kind === 'edge' ? `${selection.source}/${selection.edgeId}` : null;
  const edges = useMemo(
    (): RateEdgeT[] =>
      graph.edges.map((e) => ({
        id: e.id,
        type: 'rate',
        source: e.source,
        sourceHandle: e.sourcePort,
        target: e.target,
        targetHandle: e.targetPort,
        selected: e.id === selectedEdge,
        hidden: unplaced.has(e.source) || unplaced.has(e.target),
        deletable: false,
        markerEnd: { type: MarkerType.ArrowClosed, width: 16, height: 16 },
        data: {
          source: e.source,
          edgeId: e.edgeId,
          rate: edgeRate(state.rates, e.target, e.targetPort),
          mapped: e.mapping !== undefined && e.mapping !== null,
          onSelect: () => onSelect({ kind: 'edge', source: e.source, edgeId: e.edgeId }),
        },
      })),
    [graph.edges, state.rates, selectedEdge, onSelect, unplaced],
  );

  const connect = useCallback(
    (c: Connection) => {
      if (!c.source || !c.target || !c.sourceHandle || !c.targetHandle) return;
      onConnect({ source: c.source, sourcePort: c.sourceHandle, target: c.target, targetPort: c.targetHandle });
    },
    [onConnect],
  );

  return (
    <div className="canvas-inner" data-testid="graph" ref={wrapper}>
      <ReactFlow<BoxNode, RateEdgeT>
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        edgeTypes={edgeTypes}
        onNodesChange={onNodesChangeKeep}
        onConnect={connect}
        isValidConnection={(c) => !!c.sourceHandle && !!c.targetHandle && !graph.nodes.find((n) => n.id === c.target)?.missing}
        onNodeClick={(_, n) => onSelect({ kind: 'node', name: n.id })}
        onEdgeClick={(_, e) => onSelect({ kind: 'edge', source: e.data!.source, edgeId: e.data!.edgeId })}
        onPaneClick={() => onSelect(null)}
        deleteKeyCode={null}
        selectionKeyCode={null}
        multiSelectionKeyCode={null}
        minZoom={0.1}
        maxZoom={2}
        fitView
        proOptions={{ hideAttribution: true }}
      >
        <Background gap={20} size={1} />
        <Controls showInteractive={false}>
          <ControlButton
            title="Lay the flow out again"
            aria-label="tidy"
            onClick={() => {
              pos.current = {};
              setTidy((t) => t + 1);
            }}
          >
            ⇄
          </ControlButton>
        </Controls>
      </ReactFlow>
      {graph.nodes.length === 0 && state.loaded && (
        <div className="canvas-note">No nodes in this flow yet: add one from the palette.</div>
      )}
    </div>
  );
}
