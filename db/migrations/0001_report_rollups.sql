CREATE TABLE "prediction_hours" (
	"hour" timestamp with time zone NOT NULL,
	"source" text NOT NULL,
	"predictions" integer NOT NULL,
	"fallbacks" integer NOT NULL,
	"weather_default" integer NOT NULL,
	"latency_ms" numeric NOT NULL,
	CONSTRAINT "prediction_hours_hour_source_pk" PRIMARY KEY("hour","source")
);
--> statement-breakpoint
CREATE TABLE "scored_hours" (
	"hour" timestamp with time zone NOT NULL,
	"source" text NOT NULL,
	"model_version" text,
	"n" integer NOT NULL,
	"abs_error" numeric NOT NULL,
	"squared_error" numeric NOT NULL,
	"actual" numeric NOT NULL,
	"actual_squared" numeric NOT NULL,
	"shadow_abs_error" numeric NOT NULL,
	"shadow_squared_error" numeric NOT NULL,
	"paired_difference" numeric NOT NULL,
	"paired_difference_squared" numeric NOT NULL,
	CONSTRAINT "scored_hours_key" UNIQUE NULLS NOT DISTINCT("hour","source","model_version")
);
--> statement-breakpoint
CREATE TABLE "scored_predictions" (
	"booking_id" text PRIMARY KEY NOT NULL,
	"prediction_id" bigint NOT NULL,
	"predicted_at" timestamp with time zone NOT NULL,
	"source" text NOT NULL,
	"model_version" text,
	"delay_minutes" double precision NOT NULL,
	"shadow_heuristic_delay" double precision NOT NULL,
	"actual_delay_minutes" double precision NOT NULL
);
--> statement-breakpoint
CREATE INDEX "scored_predictions_time_idx" ON "scored_predictions" USING btree ("predicted_at");--> statement-breakpoint
CREATE INDEX "scored_predictions_source_time_idx" ON "scored_predictions" USING btree ("source","predicted_at");--> statement-breakpoint
-- Written by hand after drizzle-kit's tables (docs/adr/0011-report-rollups.md): the terms each rollup sums, defined
-- once for the triggers, the backfill below and the reports' partial hour at a window's start (reports.ts).
CREATE FUNCTION prediction_terms(p predictions) RETURNS TABLE (
	hour timestamptz, source text, predictions integer, fallbacks integer, weather_default integer, latency_ms numeric
) LANGUAGE sql STABLE AS $$
	SELECT date_trunc('hour', p.predicted_at, 'UTC'), p.source, 1, (p.fallback_reason IS NOT NULL)::integer,
	       (p.weather_source = 'default')::integer, p.latency_ms::float8::numeric
$$;
--> statement-breakpoint
CREATE FUNCTION scored_terms(s scored_predictions) RETURNS TABLE (
	hour timestamptz, source text, model_version text, n integer, abs_error numeric, squared_error numeric,
	actual numeric, actual_squared numeric, shadow_abs_error numeric, shadow_squared_error numeric,
	paired_difference numeric, paired_difference_squared numeric
) LANGUAGE sql STABLE AS $$
	SELECT date_trunc('hour', s.predicted_at, 'UTC'), s.source, s.model_version, 1, abs(e), e * e, y, y * y,
	       abs(es), es * es, abs(e) - abs(es), (abs(e) - abs(es)) * (abs(e) - abs(es))
	FROM (SELECT s.delay_minutes::numeric - s.actual_delay_minutes::numeric AS e,
	             s.shadow_heuristic_delay::numeric - s.actual_delay_minutes::numeric AS es,
	             s.actual_delay_minutes::numeric AS y) AS d
$$;
--> statement-breakpoint
-- Adds the inserted rows' terms to their hours, subtracts the deleted ones', both for an update; rows in key order,
-- so that concurrent writers lock hours in the same order. A deleted first prediction leaves the reports.
CREATE FUNCTION prediction_hours_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
	part text;
BEGIN
	FOREACH part IN ARRAY CASE TG_OP WHEN 'INSERT' THEN ARRAY['new_rows'] WHEN 'DELETE' THEN ARRAY['old_rows']
		ELSE ARRAY['old_rows', 'new_rows'] END LOOP
		EXECUTE format($sql$
			INSERT INTO prediction_hours AS h (hour, source, predictions, fallbacks, weather_default, latency_ms)
			SELECT t.hour, t.source, $1 * sum(t.predictions), $1 * sum(t.fallbacks), $1 * sum(t.weather_default),
			       $1 * sum(t.latency_ms)
			FROM %I AS r, prediction_terms(r) AS t GROUP BY t.hour, t.source ORDER BY t.hour, t.source
			ON CONFLICT (hour, source) DO UPDATE SET predictions = h.predictions + excluded.predictions,
				fallbacks = h.fallbacks + excluded.fallbacks, weather_default = h.weather_default + excluded.weather_default,
				latency_ms = h.latency_ms + excluded.latency_ms
		$sql$, part) USING CASE part WHEN 'old_rows' THEN -1 ELSE 1 END;
	END LOOP;
	IF TG_OP <> 'INSERT' THEN
		DELETE FROM prediction_hours WHERE predictions = 0;
	END IF;
	IF TG_OP = 'DELETE' THEN
		DELETE FROM scored_predictions AS s USING old_rows AS o WHERE s.booking_id = o.booking_id AND s.prediction_id = o.id;
	END IF;
	RETURN NULL;
END $fn$;
--> statement-breakpoint
CREATE FUNCTION scored_hours_apply() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
	part text;
BEGIN
	FOREACH part IN ARRAY CASE TG_OP WHEN 'INSERT' THEN ARRAY['new_rows'] WHEN 'DELETE' THEN ARRAY['old_rows']
		ELSE ARRAY['old_rows', 'new_rows'] END LOOP
		EXECUTE format($sql$
			INSERT INTO scored_hours AS h (hour, source, model_version, n, abs_error, squared_error, actual, actual_squared,
				shadow_abs_error, shadow_squared_error, paired_difference, paired_difference_squared)
			SELECT t.hour, t.source, t.model_version, $1 * sum(t.n), $1 * sum(t.abs_error), $1 * sum(t.squared_error),
			       $1 * sum(t.actual), $1 * sum(t.actual_squared), $1 * sum(t.shadow_abs_error),
			       $1 * sum(t.shadow_squared_error), $1 * sum(t.paired_difference), $1 * sum(t.paired_difference_squared)
			FROM %I AS r, scored_terms(r) AS t GROUP BY t.hour, t.source, t.model_version
			ORDER BY t.hour, t.source, t.model_version
			ON CONFLICT (hour, source, model_version) DO UPDATE SET n = h.n + excluded.n,
				abs_error = h.abs_error + excluded.abs_error, squared_error = h.squared_error + excluded.squared_error,
				actual = h.actual + excluded.actual, actual_squared = h.actual_squared + excluded.actual_squared,
				shadow_abs_error = h.shadow_abs_error + excluded.shadow_abs_error,
				shadow_squared_error = h.shadow_squared_error + excluded.shadow_squared_error,
				paired_difference = h.paired_difference + excluded.paired_difference,
				paired_difference_squared = h.paired_difference_squared + excluded.paired_difference_squared
		$sql$, part) USING CASE part WHEN 'old_rows' THEN -1 ELSE 1 END;
	END LOOP;
	IF TG_OP <> 'INSERT' THEN
		DELETE FROM scored_hours WHERE n = 0;
	END IF;
	RETURN NULL;
END $fn$;
--> statement-breakpoint
-- Feedback scores the first prediction stored for its booking when it arrives, as the service's counters do
-- (ADR 0004); a correction replaces the actual; deleted feedback leaves the reports.
CREATE FUNCTION scored_prediction_of(booking text, actual double precision) RETURNS SETOF scored_predictions
LANGUAGE sql STABLE AS $$
	SELECT booking, q.id, q.predicted_at, q.source, q.model_version, q.delay_minutes, q.shadow_heuristic_delay, actual
	FROM predictions AS q WHERE q.booking_id = booking ORDER BY q.predicted_at, q.id LIMIT 1
$$;
--> statement-breakpoint
CREATE FUNCTION scored_predictions_from_feedback() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
	IF TG_OP = 'INSERT' THEN
		INSERT INTO scored_predictions
		SELECT s.* FROM new_rows AS n, scored_prediction_of(n.booking_id, n.actual_delay_minutes) AS s
		ORDER BY n.booking_id;
	ELSIF TG_OP = 'UPDATE' THEN
		UPDATE scored_predictions AS s SET actual_delay_minutes = n.actual_delay_minutes
		FROM new_rows AS n
		WHERE s.booking_id = n.booking_id AND s.actual_delay_minutes IS DISTINCT FROM n.actual_delay_minutes;
	ELSE
		DELETE FROM scored_predictions AS s USING old_rows AS o WHERE s.booking_id = o.booking_id;
	END IF;
	RETURN NULL;
END $fn$;
--> statement-breakpoint
CREATE TRIGGER predictions_rollup_insert AFTER INSERT ON predictions REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION prediction_hours_apply();
--> statement-breakpoint
CREATE TRIGGER predictions_rollup_update AFTER UPDATE ON predictions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION prediction_hours_apply();
--> statement-breakpoint
CREATE TRIGGER predictions_rollup_delete AFTER DELETE ON predictions REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION prediction_hours_apply();
--> statement-breakpoint
CREATE TRIGGER scored_predictions_rollup_insert AFTER INSERT ON scored_predictions REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION scored_hours_apply();
--> statement-breakpoint
CREATE TRIGGER scored_predictions_rollup_update AFTER UPDATE ON scored_predictions
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION scored_hours_apply();
--> statement-breakpoint
CREATE TRIGGER scored_predictions_rollup_delete AFTER DELETE ON scored_predictions REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION scored_hours_apply();
--> statement-breakpoint
CREATE TRIGGER feedback_scored_insert AFTER INSERT ON feedback REFERENCING NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION scored_predictions_from_feedback();
--> statement-breakpoint
CREATE TRIGGER feedback_scored_update AFTER UPDATE ON feedback REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
	FOR EACH STATEMENT EXECUTE FUNCTION scored_predictions_from_feedback();
--> statement-breakpoint
CREATE TRIGGER feedback_scored_delete AFTER DELETE ON feedback REFERENCING OLD TABLE AS old_rows
	FOR EACH STATEMENT EXECUTE FUNCTION scored_predictions_from_feedback();
--> statement-breakpoint
-- The rows stored before this migration, after the triggers: they hold their tables until the migration commits.
INSERT INTO prediction_hours (hour, source, predictions, fallbacks, weather_default, latency_ms)
SELECT t.hour, t.source, sum(t.predictions), sum(t.fallbacks), sum(t.weather_default), sum(t.latency_ms)
FROM predictions AS p, prediction_terms(p) AS t GROUP BY t.hour, t.source;
--> statement-breakpoint
INSERT INTO scored_predictions
SELECT s.* FROM feedback AS f, scored_prediction_of(f.booking_id, f.actual_delay_minutes) AS s;
