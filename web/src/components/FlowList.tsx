import { useState } from 'react';
import type { FlowEntry } from '../flows';

interface Props {
  flows: FlowEntry[];
  current: string;
  onSelect: (flow: string) => void;
}

const FLOW_NAME = /^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$/i;

/** The flows, and a field to start a new one (its nodes get its label). */
export function FlowList({ flows, current, onSelect }: Props) {
  const [name, setName] = useState('');
  const valid = FLOW_NAME.test(name) && name.length <= 63;
  return (
    <section className="flows">
      <h2>Flows</h2>
      <ul>
        {flows.map((f) => (
          <li key={f.key}>
            <button
              type="button"
              className={`flow-item${f.key === current ? ' current' : ''}${f.key === '_none' ? ' none' : ''}`}
              data-testid={`flow-item-${f.key}`}
              title={f.description || f.label}
              onClick={() => onSelect(f.key)}
            >
              <span className="flow-name">{f.label}</span>
              <span className="count">{f.nodes}</span>
            </button>
          </li>
        ))}
      </ul>
      <form
        className="new-flow"
        onSubmit={(e) => {
          e.preventDefault();
          if (!valid) return;
          onSelect(name);
          setName('');
        }}
      >
        <input
          value={name}
          placeholder="new flow…"
          aria-label="new flow name"
          onChange={(e) => setName(e.target.value.trim())}
        />
        <button type="submit" disabled={!valid} title="Draw an empty flow; nodes added to it get its label">
          +
        </button>
      </form>
    </section>
  );
}
