// Objects for the unit tests, shaped as the server sends them.

import type { PortStatus, TinyModule, TinyNode } from './types';

export function node(
  name: string,
  opts: {
    module?: string;
    component?: string;
    flow?: string;
    edges?: { id: string; port: string; to: string }[];
    ports?: PortStatus[];
    config?: { port: string; from?: string; configuration?: unknown }[];
    ready?: boolean;
    rv?: string;
  } = {},
): TinyNode {
  return {
    metadata: {
      name,
      labels: opts.flow ? { 'tinysystems.io/flow-name': opts.flow } : undefined,
      resourceVersion: opts.rv,
    },
    spec: {
      module: opts.module ?? 'tinymod',
      component: opts.component ?? 'debug',
      ports: opts.config,
      edges: opts.edges,
    },
    status: {
      ports: opts.ports,
      conditions: opts.ready === undefined ? undefined : [{ type: 'Ready', status: opts.ready ? 'True' : 'False' }],
    },
  };
}

export function module(name: string, components: { name: string; ports?: PortStatus[] }[] = []): TinyModule {
  return { metadata: { name }, status: { components } };
}

export const tickerPorts: PortStatus[] = [
  { name: '_settings', label: 'Settings', schema: { type: 'object', properties: { delay: { type: 'integer', minimum: 1 } } } },
  {
    name: '_control',
    label: 'Control',
    schema: {
      type: 'object',
      default: { running: true },
      properties: {
        start: { type: 'boolean', title: 'Start' },
        stop: { type: 'boolean', title: 'Stop' },
        running: { type: 'boolean', title: 'Running', readOnly: true },
      },
    },
  },
  { name: 'out', label: 'Out', source: true, position: 'right' },
];

export function byName<T extends { metadata: { name: string } }>(...xs: T[]): Record<string, T> {
  return Object.fromEntries(xs.map((x) => [x.metadata.name, x]));
}
