import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, errorText } from './api';

describe('errorText', () => {
  it('shows the reason and message of an error body', () => {
    expect(errorText(403, 'Forbidden', '{"status":403,"reason":"Forbidden","message":"exposed read-only"}')).toBe(
      'Forbidden: exposed read-only',
    );
    expect(errorText(422, 'Unprocessable Entity', '{"status":422,"reason":"Invalid","message":"delay: must be >= 1"}')).toBe(
      'Invalid: delay: must be >= 1',
    );
  });

  it('falls back to the status', () => {
    expect(errorText(403, '', 'no token')).toBe('Forbidden: no token');
    expect(errorText(500, 'Internal Server Error', '')).toBe('Internal Server Error');
    expect(errorText(502, '', '')).toBe('HTTP 502');
  });
});

describe('calls', () => {
  afterEach(() => vi.unstubAllGlobals());

  it('send the token in a header and JSON, never in the URL', async () => {
    vi.stubGlobal('document', {
      querySelector: (sel: string) => (sel.includes('tinymod-token') ? { getAttribute: () => 'secret' } : null),
    });
    const fetch = vi.fn(async () => new Response('{"name":"sig-1"}', { status: 201 }));
    vi.stubGlobal('fetch', fetch);
    expect(await api.sendSignal('ticker-1', '_control', { start: true })).toEqual({ name: 'sig-1' });
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/signals');
    expect(url).not.toContain('secret');
    expect(init.method).toBe('POST');
    expect(init.headers).toEqual({ 'X-Tinymod-Token': 'secret', 'Content-Type': 'application/json' });
    expect(JSON.parse(init.body as string)).toEqual({ node: 'ticker-1', port: '_control', data: { start: true } });
  });

  it('throw the server’s reason and message', async () => {
    vi.stubGlobal('document', { querySelector: () => null });
    vi.stubGlobal('fetch', async () => new Response('{"status":403,"reason":"Forbidden","message":"nope"}', { status: 403 }));
    await expect(api.deleteNode('a')).rejects.toThrow('Forbidden: nope');
  });

  it('escape names in paths', async () => {
    vi.stubGlobal('document', { querySelector: () => null });
    const fetch = vi.fn(async () => new Response(null, { status: 204 }));
    vi.stubGlobal('fetch', fetch);
    await api.deleteEdge('a', 'e/1');
    expect((fetch.mock.calls[0] as unknown as [string])[0]).toBe('/api/nodes/a/edges/e%2F1');
  });
});
