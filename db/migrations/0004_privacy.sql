CREATE TABLE "erasures" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"booking_ref" text NOT NULL,
	"predictions" integer NOT NULL,
	"feedback" integer NOT NULL,
	"scored" integer NOT NULL,
	CONSTRAINT "erasures_booking_ref" CHECK ("erasures"."booking_ref" ~ '^bk_[0-9a-f]{20}$')
);
--> statement-breakpoint
ALTER TABLE "predictions" ADD COLUMN "booking_ref" text;--> statement-breakpoint
CREATE INDEX "erasures_booking_ref_idx" ON "erasures" USING btree ("booking_ref");--> statement-breakpoint
CREATE INDEX "predictions_booking_ref_idx" ON "predictions" USING btree ("booking_ref");--> statement-breakpoint
-- Written by hand after drizzle-kit's tables (docs/privacy.md): what Grafana's Postgres datasource may read, as the
-- role delay_grafana. Exactly these grants, whatever the role held before: the tables the dashboards read, never a
-- booking id in clear (every column of predictions and scored_predictions but booking_id), no write. The database
-- owner runs it again once an administrator has created the role where the migration could not (a managed database).
CREATE FUNCTION grafana_read_grants() RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
	pseudonymous text;
BEGIN
	EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %1$I FROM delay_grafana;
		REVOKE ALL ON ALL SEQUENCES IN SCHEMA %1$I FROM delay_grafana;
		GRANT USAGE ON SCHEMA %1$I TO delay_grafana', current_schema());
	GRANT SELECT ON flag_changes TO delay_grafana;
	FOREACH pseudonymous IN ARRAY ARRAY['predictions', 'scored_predictions'] LOOP
		EXECUTE (
			SELECT format('GRANT SELECT (%s) ON %I TO delay_grafana', string_agg(quote_ident(c.column_name), ', '),
				pseudonymous)
			FROM information_schema.columns AS c
			WHERE c.table_schema = current_schema() AND c.table_name = pseudonymous AND c.column_name <> 'booking_id'
		);
	END LOOP;
END $fn$;
--> statement-breakpoint
-- Roles belong to the cluster, not the database: created NOLOGIN when missing (the deployment gives it LOGIN and a
-- password), by whichever migration gets there first when several databases migrate at once. An owner that may not
-- create roles still migrates: a WARNING, which the server logs too, says what to do.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'delay_grafana') THEN
		BEGIN
			CREATE ROLE delay_grafana NOLOGIN;
		EXCEPTION
			WHEN duplicate_object OR unique_violation THEN NULL;
			WHEN insufficient_privilege THEN
				RAISE WARNING 'role delay_grafana not created (%): Grafana''s Postgres datasource has no role to read with; an administrator creates it (CREATE ROLE delay_grafana LOGIN PASSWORD ...), then the database owner runs SELECT grafana_read_grants()', SQLERRM;
				RETURN;
		END;
	END IF;
	PERFORM grafana_read_grants();
END $$;
