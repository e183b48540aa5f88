// Calls to the server. Every call but GET carries the page's token in a header.

import type { TinyNode } from './types';

function meta(name: string): string {
  if (typeof document === 'undefined') return '';
  return document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') ?? '';
}

/** The token the server put in the page. */
export function pageToken(): string {
  return meta('tinymod-token');
}

/** Whether the server said, in the page, that it is reachable beyond this machine. */
export function pageExposed(): boolean {
  return meta('tinymod-exposed') === 'true';
}

/** An error answer, with the text to show where the user acted. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * errorText is what to show for a failed call: "<reason>: <message>" from the
 * server's error body (a 403 reads "Forbidden: ..."), else the HTTP status.
 */
export function errorText(status: number, statusText: string, body: string): string {
  let reason = '';
  let message = '';
  try {
    const b = JSON.parse(body);
    if (b && typeof b === 'object') {
      reason = typeof b.reason === 'string' ? b.reason : '';
      message = typeof b.message === 'string' ? b.message : '';
    }
  } catch {
    message = body.trim();
  }
  if (!reason) reason = status === 403 ? 'Forbidden' : statusText || `HTTP ${status}`;
  return message ? `${reason}: ${message}` : reason;
}

/** messageOf is the text of any thrown value. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (method !== 'GET') {
    headers['X-Tinymod-Token'] = pageToken();
    headers['Content-Type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch (err) {
    throw new ApiError(0, 'Unreachable', `the server did not answer (${messageOf(err)})`);
  }
  const text = await res.text();
  if (!res.ok) {
    let reason = '';
    try {
      reason = JSON.parse(text)?.reason ?? '';
    } catch {
      /* not JSON */
    }
    const shown = errorText(res.status, res.statusText, text);
    throw new ApiError(res.status, reason, shown);
  }
  if (!text) return undefined as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined as T;
  }
}

const enc = encodeURIComponent;

export const api = {
  sendSignal: (node: string, port: string, data: unknown) =>
    call<{ name: string }>('POST', '/api/signals', { node, port, data }),
  saveSettings: (node: string, configuration: unknown) =>
    call<TinyNode>('PUT', `/api/nodes/${enc(node)}/settings`, { configuration }),
  createNode: (module: string, component: string, flow: string) =>
    call<TinyNode>('POST', '/api/nodes', { module, component, flow }),
  deleteNode: (node: string) => call<void>('DELETE', `/api/nodes/${enc(node)}`),
  createEdge: (node: string, port: string, to: string, mapping: unknown) =>
    call<{ id: string }>('POST', `/api/nodes/${enc(node)}/edges`, { port, to, mapping }),
  deleteEdge: (node: string, id: string) =>
    call<void>('DELETE', `/api/nodes/${enc(node)}/edges/${enc(id)}`),
  checkMapping: (mapping: unknown) =>
    call<{ ok: boolean; error?: string }>('POST', '/api/mapping/check', { mapping }),
};
