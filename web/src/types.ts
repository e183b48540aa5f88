// The Kubernetes objects and server events the page reads, as JSON.

export type JSONValue = null | boolean | number | string | JSONValue[] | { [key: string]: JSONValue };

/** A JSON Schema as ports publish it; only the keywords the page reads are named. */
export interface Schema {
  type?: string | string[];
  title?: string;
  description?: string;
  format?: string;
  default?: unknown;
  properties?: Record<string, Schema>;
  required?: string[];
  readOnly?: boolean;
  readonly?: boolean;
  propertyOrder?: number;
  [key: string]: unknown;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  creationTimestamp?: string;
  resourceVersion?: string;
  [key: string]: unknown;
}

export interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown' | string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
}

export interface PortConfig {
  port: string;
  from?: string;
  configuration?: unknown;
}

export interface NodeEdge {
  id: string;
  port: string;
  to: string;
  retry?: { attempts: number; backoff?: string };
}

export type PortPosition = 'left' | 'right' | 'top' | 'bottom' | '';

export interface PortStatus {
  name: string;
  label?: string;
  source?: boolean;
  position?: PortPosition;
  schema?: Schema;
}

export interface TinyNode {
  metadata: ObjectMeta;
  spec: {
    module: string;
    component: string;
    ports?: PortConfig[];
    edges?: NodeEdge[];
  };
  status?: {
    module?: { name?: string; version?: string };
    component?: { name?: string; description?: string };
    ports?: PortStatus[];
    metadata?: Record<string, string>;
    error?: string;
    conditions?: Condition[];
  };
}

export interface ModuleComponent {
  name: string;
  description?: string;
  info?: string;
  ports?: PortStatus[];
}

export interface TinyModule {
  metadata: ObjectMeta;
  status?: {
    leader?: string;
    version?: string;
    components?: ModuleComponent[];
  };
}

export interface TinyFlow {
  metadata: ObjectMeta;
  spec?: { description?: string };
}

export interface TinySignal {
  metadata: ObjectMeta;
  spec: { node: string; port: string; data?: unknown };
  status?: { phase?: string; attempts?: number; lastError?: string };
}

export interface Replica {
  identity: string;
  alive: boolean;
  leader: boolean;
  addr?: string;
  metricsAddr?: string;
}

export interface ModuleLeadership {
  leader: string;
  acquiredAt: string;
  renewedAt: string;
  leaseDurationSeconds: number;
  expired: boolean;
  replicas: Replica[];
}

export interface Leadership {
  modules: Record<string, ModuleLeadership>;
}

export interface NodeRate {
  messages: number;
  errors: number;
  lastError?: string;
  lastErrorAt?: string;
}

export interface Rates {
  at?: string;
  nodes: Record<string, NodeRate>;
  ports: Record<string, number>;
}

export interface DebugEntry {
  node: string;
  at: string;
  replica: string;
  data: unknown;
}

export interface Snapshot {
  namespace: string;
  exposed: boolean;
  nodes: TinyNode[];
  modules: TinyModule[];
  flows: TinyFlow[];
  signals: TinySignal[];
  leadership: Leadership;
  rates: Rates;
  debug: DebugEntry[];
}

export interface ObjectEvent<T> {
  type: 'upsert' | 'delete';
  object: T;
}

/** The label that puts a node in a flow. */
export const FLOW_LABEL = 'tinysystems.io/flow-name';

/** The port that receives a node's settings. */
export const SETTINGS_PORT = '_settings';
/** The port that receives control actions (buttons). */
export const CONTROL_PORT = '_control';
/** Ports that are never drawn as edge handles. */
export const SYSTEM_PORTS: ReadonlySet<string> = new Set(['_settings', '_control', '_reconcile', '_client']);
