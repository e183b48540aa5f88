import { useState } from 'react';
import { clockTime, compactJSON } from '../format';
import type { DebugEntry } from '../types';

/** Debug nodes' messages, newest first. */
export function DebugPanel({ entries }: { entries: DebugEntry[] }) {
  const [open, setOpen] = useState(true);
  const [filter, setFilter] = useState('');
  const shown = filter ? entries.filter((e) => e.node.includes(filter)) : entries;
  return (
    <section className={`debug${open ? ' open' : ''}`} data-testid="debug-panel">
      <div className="debug-bar">
        <button type="button" className="link" onClick={() => setOpen(!open)}>
          {open ? '▾' : '▸'} Debug
        </button>
        <span className="muted small">{entries.length} messages</span>
        <input value={filter} placeholder="filter by node" aria-label="filter debug messages by node" onChange={(e) => setFilter(e.target.value)} />
      </div>
      {open && (
        <ol className="debug-list">
          {shown.map((e, i) => (
            <li key={`${e.at}-${e.node}-${entries.length - i}`} className="debug-entry" data-testid="debug-message">
              <span className="debug-time">{clockTime(e.at)}</span> <span className="debug-node">{e.node}</span>{' '}
              {e.replica && <span className="muted small">{e.replica}</span>} <code>{compactJSON(e.data)}</code>
            </li>
          ))}
          {shown.length === 0 && <li className="muted small">Nothing yet: debug nodes show what they receive here.</li>}
        </ol>
      )}
    </section>
  );
}
