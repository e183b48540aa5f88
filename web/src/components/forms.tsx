// rjsf pieces shared by the settings and control forms.

import { useEffect, useState } from 'react';
import type { FieldProps, RJSFSchema } from '@rjsf/utils';

export interface FormContext {
  /** A JSON field reports whether its text parses. */
  setJsonError?: (id: string, error: string | null) => void;
}

function show(v: unknown): string {
  return v === undefined ? '' : JSON.stringify(v, null, 2);
}

/**
 * JsonField edits a value whose schema names no type (a port's `any`): JSON
 * in a text area. It replaces rjsf's fallback for such schemas.
 */
export function JsonField(props: FieldProps<unknown, RJSFSchema, FormContext>) {
  const { formData, onChange, fieldPathId, readonly, disabled, registry, schema, name } = props;
  const [text, setText] = useState(() => show(formData));
  const [error, setError] = useState('');
  const id = fieldPathId.$id;
  const report = registry.formContext?.setJsonError;

  // A value changed from outside (not by typing here) replaces the text.
  useEffect(() => {
    let same = false;
    try {
      same = JSON.stringify(text.trim() === '' ? undefined : JSON.parse(text)) === JSON.stringify(formData);
    } catch {
      same = false;
    }
    if (!same && !error) setText(show(formData));
    // Only outside changes matter here.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [formData]);
  useEffect(() => () => report?.(id, null), [id, report]);

  const change = (t: string) => {
    setText(t);
    if (t.trim() === '') {
      setError('');
      report?.(id, null);
      onChange(undefined, fieldPathId.path);
      return;
    }
    try {
      const v = JSON.parse(t);
      setError('');
      report?.(id, null);
      onChange(v, fieldPathId.path);
    } catch (err) {
      const msg = `${schema.title ?? name ?? 'value'}: not JSON (${err instanceof Error ? err.message : String(err)})`;
      setError(msg);
      report?.(id, msg);
    }
  };

  return (
    <div className="json-field">
      <textarea
        id={id}
        className="json-input"
        rows={Math.min(8, Math.max(2, text.split('\n').length))}
        spellCheck={false}
        value={text}
        readOnly={readonly}
        disabled={disabled}
        placeholder="JSON"
        onChange={(e) => change(e.target.value)}
      />
      {error && <div className="field-error">{error}</div>}
    </div>
  );
}

export const fields = { FallbackField: JsonField };
