import { useState } from 'react';
import type { Graph } from '../graph';
import type { PendingConnection } from './Canvas';

interface Props {
  graph: Graph;
  source: string;
  onConnect: (c: PendingConnection) => void;
}

/** Connecting without dragging: one of the node's output ports to an input port drawn here. */
export function ConnectForm({ graph, source, onConnect }: Props) {
  const outs = graph.nodes.find((n) => n.id === source)?.ports.filter((p) => p.source) ?? [];
  const targets = graph.nodes
    .filter((n) => !n.missing)
    .flatMap((n) => n.ports.filter((p) => p.target).map((p) => `${n.id}.${p.name}`));
  const [port, setPort] = useState('');
  const [to, setTo] = useState('');
  if (outs.length === 0 || targets.length === 0) return null;
  const from = outs.some((p) => p.name === port) ? port : outs[0].name;
  const target = targets.includes(to) ? to : targets[0];
  return (
    <section>
      <h3>Connect</h3>
      <div className="connect">
        <select aria-label="output port" value={from} onChange={(e) => setPort(e.target.value)}>
          {outs.map((p) => (
            <option key={p.name} value={p.name}>
              {p.label}
            </option>
          ))}
        </select>
        <span>→</span>
        <select aria-label="target port" value={target} onChange={(e) => setTo(e.target.value)}>
          {targets.map((t) => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
        <button
          type="button"
          onClick={() => {
            const i = target.lastIndexOf('.');
            onConnect({ source, sourcePort: from, target: target.slice(0, i), targetPort: target.slice(i + 1) });
          }}
        >
          Connect…
        </button>
      </div>
    </section>
  );
}
