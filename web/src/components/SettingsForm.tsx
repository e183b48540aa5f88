import { useCallback, useEffect, useMemo, useState } from 'react';
import Form from '@rjsf/core';
import type { RJSFSchema } from '@rjsf/utils';
import { api, messageOf } from '../api';
import { formSchema, initialValue, uiSchemaFor } from '../schemaUi';
import { errorSchema, problemText, type CheckResult } from '../problems';
import { checkSoon, formValidator } from '../validation';
import type { Schema, TinyNode } from '../types';
import { fields, type FormContext } from './forms';

interface Props {
  node: TinyNode;
  schema: Schema;
  onSaved: (node: TinyNode) => void;
}

function configured(node: TinyNode): unknown {
  return node.spec.ports?.find((p) => p.port === '_settings' && !p.from)?.configuration;
}

/** The node's settings as a form of their schema, checked here, saved with PUT. */
export function SettingsForm({ node, schema: published, onSaved }: Props) {
  const schema = useMemo(() => formSchema(published), [published]);
  const name = node.metadata.name;
  const current = configured(node);
  const currentKey = JSON.stringify(current ?? null) + JSON.stringify(schema);
  const [data, setData] = useState<unknown>(() => initialValue(current, schema));
  const [dirty, setDirty] = useState(false);
  const [serverError, setServerError] = useState('');
  const [saving, setSaving] = useState(false);
  const [saved, setSaved] = useState(false);
  const [jsonErrors, setJsonErrors] = useState<Record<string, string>>({});
  const [generation, setGeneration] = useState(0);

  // What the cluster holds replaces the form until the user edits it.
  useEffect(() => {
    if (!dirty) setData(initialValue(current, schema));
    // currentKey stands for current and schema.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [currentKey, dirty]);

  const uiSchema = useMemo(() => uiSchemaFor(schema), [schema]);
  // The same check the server makes, as the user types; a schema the page
  // cannot compile is left to the server (a warning, not a refusal).
  const [checked, setChecked] = useState<{ data: unknown; result: CheckResult } | null>(null);
  useEffect(() => {
    let live = true;
    void checkSoon(schema as RJSFSchema, data).then((result) => live && setChecked({ data, result }));
    return () => {
      live = false;
    };
  }, [data, schema]);
  const problems = checked?.result.problems ?? [];
  const errors = problems.map(problemText);
  const warning = checked?.result.compileError ? `The page could not check these settings: ${checked.result.compileError}` : '';
  const extraErrors = useMemo(() => errorSchema(checked?.result.problems ?? []), [checked]);
  const parseErrors = Object.values(jsonErrors);
  // Only a check of what the form holds now closes Save: one of what it held
  // before the last keystroke says nothing of the fix just typed (and Save
  // checks what it sends in any case).
  const checkedNow = checked !== null && checked.data === data;
  const invalid = (checkedNow && errors.length > 0) || parseErrors.length > 0;

  const setJsonError = useCallback((id: string, error: string | null) => {
    setJsonErrors((m) => {
      if ((m[id] ?? null) === error) return m;
      const next = { ...m };
      if (error === null) delete next[id];
      else next[id] = error;
      return next;
    });
  }, []);
  const formContext = useMemo<FormContext>(() => ({ setJsonError }), [setJsonError]);

  const save = async () => {
    setServerError('');
    setSaved(false);
    if (invalid) return;
    setSaving(true);
    try {
      // Check what is sent, not what was last checked.
      const result = await checkSoon(schema as RJSFSchema, data);
      setChecked({ data, result });
      if (result.problems.length > 0) return;
      const updated = await api.saveSettings(name, data ?? {});
      setDirty(false);
      setSaved(true);
      if (updated?.metadata) onSaved(updated);
    } catch (err) {
      setServerError(messageOf(err));
    } finally {
      setSaving(false);
    }
  };

  const shownErrors = [...(serverError ? [serverError] : []), ...parseErrors, ...errors];

  return (
    <div className="settings">
      <div data-testid={`settings-form-${name}`} className="form">
        <Form
          key={generation}
          schema={schema as RJSFSchema}
          uiSchema={uiSchema}
          formData={data}
          validator={formValidator()}
          fields={fields}
          formContext={formContext}
          extraErrors={extraErrors}
          showErrorList={false}
          noHtml5Validate
          onChange={(e) => {
            setData(e.formData);
            setDirty(true);
            setSaved(false);
          }}
          onSubmit={() => void save()}
        >
          <></>
        </Form>
      </div>
      <div className="form-actions">
        <button
          type="button"
          className="primary"
          data-testid="settings-save"
          disabled={saving || invalid}
          title={invalid ? 'The settings do not match their schema' : undefined}
          onClick={() => void save()}
        >
          {saving ? 'Saving…' : 'Save'}
        </button>
        {dirty && (
          <button
            type="button"
            onClick={() => {
              setDirty(false);
              setServerError('');
              setJsonErrors({});
              setGeneration((g) => g + 1);
            }}
          >
            Revert
          </button>
        )}
        {saved && !dirty && <span className="ok-text small">saved</span>}
      </div>
      {warning && <div className="muted small">{warning}</div>}
      {shownErrors.length > 0 && (
        <div className="error" data-testid="settings-error" role="alert">
          {shownErrors.map((e, i) => (
            <div key={i}>{e}</div>
          ))}
        </div>
      )}
    </div>
  );
}
