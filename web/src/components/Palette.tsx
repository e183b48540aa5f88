import { useState } from 'react';
import { api, messageOf } from '../api';
import { NO_FLOW } from '../flows';
import type { TinyModule, TinyNode } from '../types';

interface Props {
  modules: Record<string, TinyModule>;
  flow: string;
  onCreated: (node: TinyNode) => void;
}

/** Every component of every module; a click adds a node of it to the drawn flow. */
export function Palette({ modules, flow, onCreated }: Props) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState('');
  const list = Object.values(modules).sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : 1));

  const add = async (module: string, component: string) => {
    setError('');
    setBusy(`${module}/${component}`);
    try {
      const node = await api.createNode(module, component, flow === NO_FLOW ? '' : flow);
      if (node) onCreated(node);
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy('');
    }
  };

  return (
    <section className="palette">
      <h2>Components</h2>
      {list.length === 0 && <div className="muted small">No module has published its components.</div>}
      {list.map((m) => (
        <div key={m.metadata.name} className="palette-module">
          <div className="palette-module-name">{m.metadata.name}</div>
          {(m.status?.components ?? []).map((c) => (
            <button
              key={c.name}
              type="button"
              className="palette-item"
              data-testid={`palette-${m.metadata.name}-${c.name}`}
              title={c.description ? `${c.description} — add to this flow` : 'add to this flow'}
              disabled={busy === `${m.metadata.name}/${c.name}`}
              onClick={() => void add(m.metadata.name, c.name)}
            >
              <span>+ {c.name}</span>
              {c.description && <span className="muted small"> {c.description}</span>}
            </button>
          ))}
        </div>
      ))}
      {error && (
        <div className="error" data-testid="palette-error" role="alert">
          {error}
        </div>
      )}
    </section>
  );
}
