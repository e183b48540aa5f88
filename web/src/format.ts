// Numbers and durations as the page shows them.

/** formatRate shows a per-second rate with at most one decimal below 10. */
export function formatRate(v: number | undefined | null): string {
  if (v === undefined || v === null || !Number.isFinite(v)) return '0';
  if (v === 0) return '0';
  if (v < 0.1) return '<0.1';
  if (v < 10) return (Math.round(v * 10) / 10).toString();
  return Math.round(v).toString();
}

/** formatDuration shows milliseconds as "45s", "3m 05s", "2h 03m", "4d 01h". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(s % 60)}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${pad(m % 60)}m`;
  return `${Math.floor(h / 24)}d ${pad(h % 24)}h`;
}

/** ageSince is how long ago an RFC 3339 time was, or null when there is none. */
export function ageSince(rfc3339: string | undefined, now: number): string | null {
  if (!rfc3339) return null;
  const t = Date.parse(rfc3339);
  if (Number.isNaN(t)) return null;
  return formatDuration(now - t);
}

/** compactJSON shows a value on one line. */
export function compactJSON(v: unknown): string {
  try {
    const s = JSON.stringify(v);
    return s === undefined ? 'undefined' : s;
  } catch {
    return String(v);
  }
}

/** clockTime shows the time of day of an RFC 3339 time (local), or the text as is. */
export function clockTime(rfc3339: string): string {
  const t = Date.parse(rfc3339);
  if (Number.isNaN(t)) return rfc3339 ?? '';
  const d = new Date(t);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}
