import { describe, expect, it } from 'vitest';
import { ageSince, compactJSON, formatDuration, formatRate } from './format';

describe('format', () => {
  it('shows rates', () => {
    expect(formatRate(undefined)).toBe('0');
    expect(formatRate(0)).toBe('0');
    expect(formatRate(0.04)).toBe('<0.1');
    expect(formatRate(2.345)).toBe('2.3');
    expect(formatRate(123.6)).toBe('124');
  });

  it('shows durations', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(59_999)).toBe('59s');
    expect(formatDuration(65_000)).toBe('1m 05s');
    expect(formatDuration(2 * 3600_000 + 3 * 60_000)).toBe('2h 03m');
    expect(formatDuration(26 * 3600_000)).toBe('1d 02h');
    expect(formatDuration(-5)).toBe('0s');
  });

  it('ticks a lease age from acquiredAt', () => {
    const t = Date.parse('2025-01-01T00:00:00Z');
    expect(ageSince('2025-01-01T00:00:00Z', t + 5_000)).toBe('5s');
    expect(ageSince('2025-01-01T00:00:00Z', t + 6_000)).toBe('6s');
    expect(ageSince('', t)).toBeNull();
    expect(ageSince('garbage', t)).toBeNull();
  });

  it('shows JSON on one line', () => {
    expect(compactJSON({ a: [1, 'x'] })).toBe('{"a":[1,"x"]}');
    expect(compactJSON(undefined)).toBe('undefined');
  });
});
