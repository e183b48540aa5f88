// The server's event stream. EventSource reconnects by itself; the server
// sends a fresh snapshot on every (re)connect.

import { useEffect, useState } from 'react';

export const EVENT_NAMES = ['snapshot', 'node', 'module', 'flow', 'signal', 'leadership', 'rates', 'debug'] as const;

/** useEventStream feeds every event to onEvent and says whether the stream is connected. */
export function useEventStream(url: string, onEvent: (event: string, data: unknown) => void): boolean {
  const [live, setLive] = useState(false);
  useEffect(() => {
    if (typeof EventSource === 'undefined') return;
    let es: EventSource | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const connect = () => {
      const source = new EventSource(url);
      es = source;
      source.onopen = () => setLive(true);
      source.onerror = () => {
        setLive(false);
        // CONNECTING: the browser retries by itself. CLOSED (the server
        // answered with an error): it gave up, so try again here.
        if (source.readyState === EventSource.CLOSED && !stopped) {
          clearTimeout(retry);
          retry = setTimeout(connect, 2000);
        }
      };
      for (const name of EVENT_NAMES) {
        source.addEventListener(name, (e: MessageEvent) => {
          let data: unknown;
          try {
            data = JSON.parse(e.data);
          } catch {
            return;
          }
          if (name === 'snapshot') setLive(true);
          onEvent(name, data);
        });
      }
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(retry);
      es?.close();
    };
    // onEvent is a stable dispatch.
  }, [url]);
  return live;
}

/** useNow re-renders every `ms` and returns the current time. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}
