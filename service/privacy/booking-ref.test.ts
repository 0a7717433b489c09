import { describe, expect, it } from 'vitest';
import { BOOKING_REF_PATTERN, bookingRefs, randomBookingRefKey } from './booking-ref.js';

describe('bookingRefs', () => {
  it('gives one booking the same ref under one key, another under another key, and never the id', () => {
    const ref = bookingRefs('a-key-of-sixteen-characters');
    expect(ref('B-1')).toBe(ref('B-1'));
    expect(ref('B-1')).toMatch(BOOKING_REF_PATTERN);
    expect(ref('B-1')).not.toContain('B-1');
    expect(ref('B-2')).not.toBe(ref('B-1'));
    expect(bookingRefs(randomBookingRefKey())('B-1')).not.toBe(ref('B-1'));
  });

  it('refuses a short key', () => {
    expect(() => bookingRefs('short')).toThrow(/at least 16/);
  });
});
