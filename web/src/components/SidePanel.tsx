import { useMemo } from 'react';
import Form from '@rjsf/core';
import type { RJSFSchema } from '@rjsf/utils';
import { controlSpec } from '../control';
import { formatRate } from '../format';
import { edgeRate, portSchema, type Graph } from '../graph';
import { uiSchemaFor } from '../schemaUi';
import type { State } from '../state';
import type { TinyNode } from '../types';
import type { Selection } from '../App';
import { SettingsForm } from './SettingsForm';
import { ConnectForm } from './ConnectForm';
import type { PendingConnection } from './Canvas';
import { fields } from './forms';
import { formValidator } from '../validation';

interface Props {
  state: State;
  graph: Graph;
  selection: Selection;
  controlValues: Record<string, Record<string, unknown>>;
  setControlValues: (f: (v: Record<string, Record<string, unknown>>) => Record<string, Record<string, unknown>>) => void;
  onDeleteNode: (name: string) => void;
  onDeleteEdge: (source: string, id: string) => void;
  onNodeSaved: (node: TinyNode) => void;
  onConnect: (c: PendingConnection) => void;
  error: string;
}

function pretty(v: unknown): string {
  return JSON.stringify(v, null, 2) ?? '';
}

/** The selected node (run, settings, delete) or edge (mapping, delete). */
export function SidePanel(props: Props) {
  const { state, graph, selection, error } = props;
  if (!selection) {
    return (
      <div className="panel empty">
        <p className="muted">Select a node or an edge.</p>
        <p className="muted small">
          Drag from an output handle (right) to an input handle (left) to connect two ports. Delete removes what is
          selected.
        </p>
      </div>
    );
  }
  if (selection.kind === 'edge') {
    const e = graph.edges.find((x) => x.source === selection.source && x.edgeId === selection.edgeId);
    if (!e) return <div className="panel" />;
    const retry = state.nodes[e.source]?.spec.edges?.find((x) => x.id === e.edgeId)?.retry;
    return (
      <div className="panel">
        <h2>Edge {e.edgeId}</h2>
        <dl>
          <dt>from</dt>
          <dd>
            {e.source}.{e.sourcePort}
          </dd>
          <dt>to</dt>
          <dd>
            {e.target}.{e.targetPort}
          </dd>
          <dt>rate</dt>
          <dd>{formatRate(edgeRate(state.rates, e.target, e.targetPort))} msg/s into the target port</dd>
          {retry && (
            <>
              <dt>retry</dt>
              <dd>
                {retry.attempts} attempts{retry.backoff ? `, backoff ${retry.backoff}` : ''}
              </dd>
            </>
          )}
        </dl>
        <h3>Mapping</h3>
        {e.mapping === undefined || e.mapping === null ? (
          <p className="muted small">None: the message arrives as sent.</p>
        ) : (
          <pre className="code">{pretty(e.mapping)}</pre>
        )}
        <div className="danger-zone">
          <button type="button" className="danger" data-testid="delete-edge" onClick={() => props.onDeleteEdge(e.source, e.edgeId)}>
            Delete edge
          </button>
        </div>
        {error && (
          <div className="error" data-testid="panel-error" role="alert">
            {error}
          </div>
        )}
      </div>
    );
  }
  const g = graph.nodes.find((n) => n.id === selection.name);
  if (!g) return <div className="panel" />;
  const node = g.node;
  return (
    <div className="panel">
      <h2 title={g.id}>{g.id}</h2>
      {!node ? (
        <p className="muted">No TinyNode has this name: an edge points at it.</p>
      ) : (
        <NodeDetails {...props} node={node} />
      )}
      <div className="danger-zone">
        {node && (
          <button type="button" className="danger" data-testid="delete-node" onClick={() => props.onDeleteNode(g.id)}>
            Delete node
          </button>
        )}
      </div>
      {error && (
        <div className="error" data-testid="panel-error" role="alert">
          {error}
        </div>
      )}
    </div>
  );
}

function NodeDetails(props: Props & { node: TinyNode }) {
  const { node, state } = props;
  const name = node.metadata.name;
  const settingsSchema = portSchema(node, state.modules, '_settings');
  const control = useMemo(() => controlSpec(portSchema(node, state.modules, '_control')), [node, state.modules]);
  const ready = node.status?.conditions?.find((c) => c.type === 'Ready');
  const mappings = (node.spec.ports ?? []).filter((p) => p.from);
  return (
    <>
      <div className="muted small">
        {node.spec.component} · {node.spec.module}
        {node.status?.module?.version ? ` ${node.status.module.version}` : ''}
      </div>
      {node.status?.component?.description && <p className="small">{node.status.component.description}</p>}
      {ready && ready.status !== 'True' && (
        <p className="error small">
          {ready.reason}
          {ready.message ? `: ${ready.message}` : ''}
        </p>
      )}
      {node.status?.error && <p className="error small">{node.status.error}</p>}

      {control.form && (
        <section>
          <h3>Run</h3>
          <p className="muted small">Sent with the buttons on the node.</p>
          <div className="form" data-testid={`control-form-${name}`}>
            <Form
              schema={control.form as RJSFSchema}
              uiSchema={uiSchemaFor(control.form)}
              formData={props.controlValues[name] ?? {}}
              validator={formValidator()}
              fields={fields}
              showErrorList={false}
              noHtml5Validate
              idPrefix="control"
              onChange={(e) => props.setControlValues((v) => ({ ...v, [name]: (e.formData ?? {}) as Record<string, unknown> }))}
            >
              <></>
            </Form>
          </div>
        </section>
      )}

      <section>
        <h3>Settings</h3>
        {settingsSchema ? (
          <SettingsForm key={name} node={node} schema={settingsSchema} onSaved={props.onNodeSaved} />
        ) : (
          <p className="muted small">This node publishes no settings.</p>
        )}
      </section>

      <ConnectForm graph={props.graph} source={name} onConnect={props.onConnect} />

      {mappings.length > 0 && (
        <section>
          <h3>Mappings</h3>
          {mappings.map((m) => (
            <div key={`${m.port}<${m.from}`} className="mapping">
              <div className="small">
                {m.from} → {m.port}
              </div>
              <pre className="code">{pretty(m.configuration)}</pre>
            </div>
          ))}
        </section>
      )}

      {node.status?.metadata && Object.keys(node.status.metadata).length > 0 && (
        <section>
          <h3>Metadata</h3>
          <dl className="meta">
            {Object.entries(node.status.metadata).map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>
                  <code>{v.length > 300 ? `${v.slice(0, 300)}…` : v}</code>
                </dd>
              </div>
            ))}
          </dl>
        </section>
      )}
    </>
  );
}
