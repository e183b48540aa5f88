import { useEffect, useRef, useState } from 'react';
import { api, messageOf } from '../api';
import { parseMapping } from '../mapping';
import type { NodeEdge } from '../types';
import type { PendingConnection } from './Canvas';

interface Props {
  connection: PendingConnection;
  onClose: () => void;
  onCreated: (source: string, edge: NodeEdge) => void;
}

/** Connecting two ports: an optional mapping, checked by the server, then the edge. */
export function MappingDialog({ connection, onClose, onCreated }: Props) {
  const { source, sourcePort, target, targetPort } = connection;
  const [text, setText] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLTextAreaElement>(null);
  useEffect(() => input.current?.focus(), []);

  const save = async () => {
    setError('');
    const parsed = parseMapping(text);
    if (!parsed.ok) {
      setError(parsed.error);
      return;
    }
    setBusy(true);
    try {
      if (parsed.value !== null) {
        const check = await api.checkMapping(parsed.value);
        if (!check?.ok) {
          setError(`Invalid mapping: ${check?.error ?? 'rejected'}`);
          return;
        }
      }
      const res = await api.createEdge(source, sourcePort, `${target}.${targetPort}`, parsed.value);
      onCreated(source, { id: res?.id ?? '', port: sourcePort, to: `${target}.${targetPort}` });
      onClose();
    } catch (err) {
      setError(messageOf(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="overlay" onKeyDown={(e) => e.key === 'Escape' && onClose()}>
      <div className="dialog" role="dialog" aria-modal="true" aria-label="new edge" data-testid="mapping-dialog">
        <h3>
          {source}.{sourcePort} → {target}.{targetPort}
        </h3>
        <label htmlFor="mapping-input">
          Mapping <span className="muted small">(JSON; expressions as "{'{{$.field}}'}"; empty: the message as is)</span>
        </label>
        <textarea
          id="mapping-input"
          ref={input}
          data-testid="mapping-input"
          rows={8}
          spellCheck={false}
          value={text}
          placeholder='{"text": "{{$.text}}"}'
          onChange={(e) => setText(e.target.value)}
        />
        {error && (
          <div className="error" data-testid="mapping-error" role="alert">
            {error}
          </div>
        )}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="button" className="primary" data-testid="mapping-save" disabled={busy} onClick={() => void save()}>
            {busy ? 'Saving…' : 'Connect'}
          </button>
        </div>
      </div>
    </div>
  );
}
