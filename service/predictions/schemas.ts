import { z } from '@hono/zod-openapi';
import { type Booking, MAX_TRIP_KM, PRIORITIES } from '../domain/booking.js';
import { FALLBACK_REASONS } from '../domain/estimate.js';
import { WEATHER_SOURCES } from '../domain/weather.js';
import { haversineKm, ROAD_FACTOR } from '../features/booking-features.js';

/*
 * The public contract of the prediction API. Compatibility rules, so later fields never break a client:
 * new request fields are optional, unknown request fields are ignored (not rejected), and response
 * fields are only ever added.
 */

/**
 * An identifier the database keeps and hands back unchanged: Postgres refuses NUL in text, and an unpaired
 * UTF-16 surrogate is stored as U+FFFD (the id would no longer match its feedback). Other characters are kept.
 */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const identifier = () =>
  z
    .string()
    .min(1)
    .max(128)
    .refine(
      (s) => !s.includes('\u0000') && !LONE_SURROGATE.test(s),
      'must not contain NUL or unpaired surrogates',
    );

/**
 * The offsets time zones use, UTC-12:00 (Baker Island) to UTC+14:00 (Line Islands): anything beyond is a typo or
 * a unit error, not a place.
 */
export const UTC_OFFSET_RANGE_MINUTES = { min: -12 * 60, max: 14 * 60 } as const;
/** Years Postgres parses and JavaScript prints with four digits: an instant outside them is refused, not a 500. */
// Date.UTC reads years 0 to 99 as 1900 to 1999: the first year is set on a date instead.
const FIRST_INSTANT_MS = new Date(0).setUTCFullYear(1, 0, 1);
const LAST_INSTANT_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
const OFFSET_OF = /([+-])(\d{2}):(\d{2})$/;

/**
 * An RFC 3339 date-time with its UTC offset (`Z` or ±hh:mm; RFC 3339 allows `t` and `z` in lower case, kept
 * upper case from here on). The offset is kept: the booking's local wall-clock time is read from it.
 */
const timestamp = () =>
  z
    .string()
    .transform((s) => s.replace(/^(\d{4}-\d{2}-\d{2})t/, '$1T').replace(/z$/, 'Z'))
    .pipe(
      z.iso
        .datetime({
          offset: true,
          error: 'must be an RFC 3339 date-time with a UTC offset, e.g. 2026-11-25T08:15:00+01:00',
          abort: true,
        })
        .superRefine((s, ctx) => {
          const offset = OFFSET_OF.exec(s);
          const minutes = offset
            ? (offset[1] === '-' ? -1 : 1) * (Number(offset[2]) * 60 + Number(offset[3]))
            : 0;
          if (minutes < UTC_OFFSET_RANGE_MINUTES.min || minutes > UTC_OFFSET_RANGE_MINUTES.max) {
            ctx.addIssue({
              code: 'custom',
              message: `offset ${offset?.[0]} is beyond the offsets time zones use (-12:00 to +14:00)`,
            });
            return;
          }
          const at = Date.parse(s);
          if (!(at >= FIRST_INSTANT_MS && at <= LAST_INSTANT_MS)) {
            ctx.addIssue({
              code: 'custom',
              message: 'must fall in the years 0001 to 9999 once converted to UTC',
            });
          }
        }),
    );

const Coordinates = z
  .object({
    lat: z.number().min(-90).max(90).openapi({ example: 48.8566 }),
    lon: z.number().min(-180).max(180).openapi({ example: 2.3522 }),
  })
  .openapi('Coordinates');

const impliedKm = (b: { pickup: { lat: number; lon: number }; dropoff: { lat: number; lon: number } }) =>
  haversineKm(b.pickup, b.dropoff) * ROAD_FACTOR;

export const BookingSchema = z
  .object({
    booking_id: identifier().openapi({ example: 'bk-2026-000123' }),
    scheduled_at: timestamp().openapi({
      type: 'string',
      format: 'date-time',
      description:
        "RFC 3339 date-time with a UTC offset: `Z` or ±hh:mm between -12:00 and +14:00 (`t` and `z` may be lower case), in the years 0001 to 9999 once in UTC. Rush hour, the day of the week and the month are read in the offset sent, as the booking's local time: send the pickup's local time with its local offset. The same instant sent as 07:15Z and as 02:15-05:00 is predicted as a 07:15 booking and as a 02:15 booking.",
      example: '2026-11-25T08:15:00+01:00',
    }),
    pickup: Coordinates,
    dropoff: Coordinates,
    company_id: identifier().optional(),
    distance_km: z
      .number()
      .min(0)
      .max(MAX_TRIP_KM)
      .optional()
      .openapi({ description: 'Road distance; straight-line distance x 1.3 when absent' }),
    estimated_duration_min: z.number().positive().max(1440).optional(),
    driver_active_bookings: z.number().int().min(0).max(100).optional(),
    priority: z.enum(PRIORITIES).optional().openapi({ description: 'Default standard' }),
  })
  // The trip the model would be asked about must be one distance_km itself may describe.
  .refine((b) => b.distance_km !== undefined || impliedKm(b) <= MAX_TRIP_KM, {
    path: ['dropoff'],
    message: `pickup and dropoff imply a trip over ${MAX_TRIP_KM} km: check the coordinates, or send distance_km`,
  })
  .openapi('Booking') satisfies z.ZodType<Booking>;

export const PredictionSchema = z
  .object({
    booking_id: z.string(),
    delay_minutes: z.number().min(0),
    interval: z.object({
      low: z.number().min(0),
      high: z.number().min(0),
      level: z.number().openapi({ description: 'Nominal coverage of [low, high]', example: 0.8 }),
    }),
    confidence: z.number().min(0).max(1),
    risk_level: z.enum(['low', 'medium', 'high']),
    contributing_factors: z
      .array(
        z.object({
          factor: z.string(),
          minutes: z.number().openapi({ description: 'Additive contribution to delay_minutes' }),
          value: z.number().optional().openapi({ description: "The feature's value (ML contributions)" }),
          label: z.string().openapi({ example: 'precipitation_mm_h 2.3 mm/h: +4.1 min' }),
        }),
      )
      .openapi({
        description:
          "The largest contributions, largest first (the heuristic's: all of them). When the contributions sum below 0 and the delay is floored there, a last factor `floor_at_zero` carries what the floor added.",
      }),
    source: z.enum(['ml', 'heuristic']),
    fallback_reason: z.enum(FALLBACK_REASONS).nullable(),
    model_version: z.string().nullable(),
    variant: z.string().openapi({ description: 'delay-model flag variant this booking was assigned' }),
    weather: z.object({ source: z.enum(WEATHER_SOURCES) }),
  })
  .openapi('Prediction');

export type Prediction = z.infer<typeof PredictionSchema>;

export function batchRequestSchema(maxBookings: number) {
  return z.object({ bookings: z.array(BookingSchema).min(1).max(maxBookings) }).openapi('BatchRequest');
}

export const BatchResponseSchema = z
  .object({ predictions: z.array(PredictionSchema) })
  .openapi('BatchResponse');

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().optional(),
    errors: z
      .array(
        z.object({ pointer: z.string().openapi({ example: '/bookings/3/pickup/lat' }), detail: z.string() }),
      )
      .optional(),
    fallback_reason: z
      .enum(FALLBACK_REASONS)
      .optional()
      .openapi({ description: '/problems/ml-unavailable: why the model did not answer' }),
    model_version: z.string().optional().openapi({ description: '/problems/ml-unavailable: the model' }),
  })
  .openapi('Problem');

export const FeedbackSchema = z
  .object({
    booking_id: identifier(),
    actual_delay_minutes: z
      .number()
      .min(-60)
      .max(1440)
      .openapi({ description: 'Minutes late; negative when early, down to -60. Over a day is refused.' }),
    observed_at: timestamp().optional().openapi({
      type: 'string',
      format: 'date-time',
      description:
        'When the delay was observed: an RFC 3339 date-time as `scheduled_at` (offset -12:00 to +14:00, years 0001 to 9999 in UTC), stored as an instant.',
      example: '2026-11-25T08:31:00+01:00',
    }),
  })
  .openapi('Feedback');

export const FeedbackResultSchema = z
  .object({
    booking_id: z.string(),
    outcome: z.enum(['recorded', 'unchanged', 'corrected', 'unknown_booking']),
  })
  .openapi('FeedbackResult');

export function feedbackBatchSchema(max: number) {
  return z.object({ feedback: z.array(FeedbackSchema).min(1).max(max) }).openapi('FeedbackBatch');
}
