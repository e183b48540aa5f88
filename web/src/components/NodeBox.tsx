import { memo, useEffect } from 'react';
import { Handle, Position, useUpdateNodeInternals, type NodeProps, type Node } from '@xyflow/react';
import { controlMessage, type ControlSpec } from '../control';
import { formatRate } from '../format';
import type { GraphNode, GraphPort, Side } from '../graph';
import type { NodeRate } from '../types';

export type NodeBoxData = {
  g: GraphNode;
  rate?: NodeRate;
  control: ControlSpec | null;
  /** The phase of the last signal pressed here, or why the press failed. */
  phase?: string;
  values?: Record<string, unknown>;
  onPress: (node: string, action: string, data: Record<string, unknown>) => void;
};

const POSITION: Record<Side, Position> = {
  left: Position.Left,
  right: Position.Right,
  top: Position.Top,
  bottom: Position.Bottom,
};

function Handles({ port, connectable }: { port: GraphPort; connectable: boolean }) {
  return (
    <>
      {port.target && (
        <Handle
          type="target"
          id={port.name}
          position={POSITION[port.side]}
          isConnectable={connectable}
          className="port-handle target"
          data-port={port.name}
        />
      )}
      {port.source && (
        <Handle
          type="source"
          id={port.name}
          position={POSITION[port.side]}
          isConnectable={connectable}
          className="port-handle source"
          data-port={port.name}
        />
      )}
    </>
  );
}

function readiness(g: GraphNode): { ready: boolean; text: string; detail: string } {
  if (g.missing) return { ready: false, text: 'Not ready', detail: 'no such node' };
  const c = g.node?.status?.conditions?.find((c) => c.type === 'Ready');
  if (!c) return { ready: false, text: 'Not ready', detail: 'no status yet' };
  const ready = c.status === 'True';
  return { ready, text: ready ? 'Ready' : 'Not ready', detail: [c.reason, c.message].filter(Boolean).join(': ') };
}

function stateValue(v: unknown): string {
  if (v === undefined) return '–';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function NodeBoxImpl({ id, data, selected }: NodeProps<Node<NodeBoxData, 'box'>>) {
  const { g, rate, control, phase, values, onPress } = data;
  const updateInternals = useUpdateNodeInternals();
  const portsKey = g.ports.map((p) => `${p.name}:${p.side}:${+p.source}${+p.target}`).join(',');
  useEffect(() => updateInternals(id), [id, portsKey, updateInternals]);

  const left = g.ports.filter((p) => p.side === 'left');
  const right = g.ports.filter((p) => p.side === 'right');
  const top = g.ports.filter((p) => p.side === 'top');
  const bottom = g.ports.filter((p) => p.side === 'bottom');
  const rows = Math.max(left.length, right.length);
  const status = readiness(g);
  const error = g.node?.status?.error;
  const connectable = !g.missing;

  const classes = ['box'];
  if (g.missing) classes.push('missing');
  else if (g.foreign) classes.push('foreign');
  if (selected) classes.push('selected');

  return (
    <div className={classes.join(' ')} data-testid={`node-${g.id}`} data-foreign={g.foreign} data-missing={g.missing}>
      {top.length > 0 && (
        <div className="ports-tb top">
          {top.map((p) => (
            <span key={p.name} className="port-tb" title={p.name}>
              <Handles port={p} connectable={connectable} />
              {p.label}
            </span>
          ))}
        </div>
      )}
      <div className="box-head">
        <div className="box-name" title={g.id}>
          {g.id}
        </div>
        <div className="box-sub">
          {g.missing ? (
            <span className="badge missing-badge">missing</span>
          ) : (
            <>
              <span className="component">{g.component}</span>
              <span className="muted"> · </span>
              <span className="module">{g.module}</span>
              {g.foreign && (
                <span className="badge module-badge" data-testid={`node-module-${g.id}`} title="another module, or outside this flow">
                  {g.module}
                </span>
              )}
            </>
          )}
        </div>
      </div>
      {rows > 0 && (
        <div className="ports">
          {Array.from({ length: rows }, (_, i) => (
            <div className="port-row" key={i}>
              <span className="port left">
                {left[i] && (
                  <>
                    <Handles port={left[i]} connectable={connectable} />
                    <span title={left[i].name}>{left[i].label}</span>
                  </>
                )}
              </span>
              <span className="port right">
                {right[i] && (
                  <>
                    <span title={right[i].name}>{right[i].label}</span>
                    <Handles port={right[i]} connectable={connectable} />
                  </>
                )}
              </span>
            </div>
          ))}
        </div>
      )}
      <div className="box-foot">
        <div className={`status ${status.ready ? 'ok' : 'bad'}`} data-testid={`node-status-${g.id}`} title={status.detail}>
          <span className="dot" />
          {status.text}
          {!status.ready && status.detail && <span className="muted"> · {status.detail}</span>}
        </div>
        {error && <div className="node-error">{error}</div>}
        {!g.missing && (
          <div className="rate" data-testid={`node-rate-${g.id}`}>
            {formatRate(rate?.messages)} msg/s · {formatRate(rate?.errors)} err/s
          </div>
        )}
        {rate?.lastError && (
          <div className="last-error" title={rate.lastErrorAt}>
            last error: {rate.lastError}
          </div>
        )}
      </div>
      {control && (control.buttons.length > 0 || control.state.length > 0 || control.running !== undefined) && (
        <div className="controls nodrag">
          {control.running !== undefined && (
            <span
              className={`badge run-badge ${control.running ? 'running' : 'stopped'}`}
              data-testid={`control-state-${g.id}`}
              data-running={control.running}
            >
              {control.running ? 'running' : 'stopped'}
            </span>
          )}
          {control.state.map((s) => (
            <span key={s.key} className="state" title={s.key}>
              {s.title}: <b>{stateValue(s.value)}</b>
            </span>
          ))}
          {control.buttons.map((b) => (
            <button
              key={b.action}
              type="button"
              className="control nodrag"
              data-testid={`control-${g.id}-${b.action}`}
              onClick={(e) => {
                e.stopPropagation();
                onPress(g.id, b.action, controlMessage(b.action, values));
              }}
            >
              {b.title}
            </button>
          ))}
        </div>
      )}
      {phase !== undefined && (
        <div className={`phase phase-${phase.split(/[:\s]/)[0].toLowerCase()}`} data-testid={`signal-phase-${g.id}`}>
          {phase}
        </div>
      )}
      {bottom.length > 0 && (
        <div className="ports-tb bottom">
          {bottom.map((p) => (
            <span key={p.name} className="port-tb" title={p.name}>
              <Handles port={p} connectable={connectable} />
              {p.label}
            </span>
          ))}
        </div>
      )}
    </div>
  );
}

export const NodeBox = memo(NodeBoxImpl);
