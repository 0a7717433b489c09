import { describe, expect, it } from 'vitest';
import { addOutcome, bookingOutcome, businessFigures, mlAgainstRules, NO_BOOKINGS } from './business.js';

describe('what a predicted delay means for dispatch', () => {
  it('is late and flagged at the threshold itself, on the point delay', () => {
    expect(bookingOutcome(10, 10, 10)).toMatchObject({ late: true, flagged: true });
    expect(bookingOutcome(9.99, 10, 10)).toMatchObject({ late: true, flagged: false });
    expect(bookingOutcome(10, 9.99, 10)).toMatchObject({ late: false, flagged: true });
  });

  it('reserves the predicted delay, never less than 0, and an early trip uses none of it', () => {
    expect(bookingOutcome(12, 15, 10)).toMatchObject({ bufferUnused: 0, bufferShortfall: 3 });
    expect(bookingOutcome(11, 4, 10)).toMatchObject({ bufferUnused: 7, bufferShortfall: 0 });
    // 3 minutes reserved for a trip 5 minutes early: 3 unused, not 8.
    expect(bookingOutcome(3, -5, 10)).toMatchObject({ bufferUnused: 3, bufferShortfall: 0 });
    // A negative prediction reserves nothing.
    expect(bookingOutcome(-2, 4, 10)).toMatchObject({ bufferUnused: 0, bufferShortfall: 4 });
  });

  it('gives no share without its bookings, and no cost without a price', () => {
    const onTime = addOutcome(NO_BOOKINGS, bookingOutcome(4, 3, 10));
    expect(businessFigures(onTime, undefined)).toMatchObject({
      n: 1,
      anticipated_ratio: null,
      false_alarm_ratio: null,
      buffer_unused_minutes_mean: 1,
      cost: null,
    });
    expect(businessFigures(NO_BOOKINGS, 2)).toMatchObject({ buffer_unused_minutes_mean: null, cost: 0 });
    const both = addOutcome(onTime, bookingOutcome(12, 15, 10));
    expect(businessFigures(both, 2)).toMatchObject({ anticipated_ratio: 1, false_alarm_ratio: 0, cost: 8 });
  });

  it('compares ML with the rules as relative changes, none against 0', () => {
    const ml = { ...NO_BOOKINGS, n: 2, buffer_unused_minutes: 3, buffer_shortfall_minutes: 1 };
    const rules = { ...NO_BOOKINGS, n: 2, buffer_unused_minutes: 4, buffer_shortfall_minutes: 0 };
    expect(mlAgainstRules(ml, rules)).toEqual({
      buffer_unused_change: -0.25,
      buffer_shortfall_change: null,
      buffer_minutes_change: 0,
    });
  });
});
