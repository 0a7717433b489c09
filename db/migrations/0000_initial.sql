CREATE TABLE "feedback" (
	"booking_id" text PRIMARY KEY NOT NULL,
	"actual_delay_minutes" double precision NOT NULL,
	"observed_at" timestamp with time zone,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revisions" integer DEFAULT 0 NOT NULL
);
--> statement-breakpoint
CREATE TABLE "flag_changes" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL,
	"action" text NOT NULL,
	"flag" text NOT NULL,
	"previous_weight" real,
	"new_weight" real,
	"model_version" text,
	"reason" text,
	"alert_name" text,
	"fingerprint" text,
	"labels" jsonb
);
--> statement-breakpoint
CREATE TABLE "predictions" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"booking_id" text NOT NULL,
	"predicted_at" timestamp with time zone NOT NULL,
	"endpoint" text NOT NULL,
	"source" text NOT NULL,
	"variant" text NOT NULL,
	"model_version" text,
	"fallback_reason" text,
	"delay_minutes" double precision NOT NULL,
	"interval_low" double precision NOT NULL,
	"interval_high" double precision NOT NULL,
	"shadow_heuristic_delay" double precision NOT NULL,
	"features" jsonb NOT NULL,
	"weather_source" text NOT NULL,
	"latency_ms" real NOT NULL,
	"trace_id" text
);
--> statement-breakpoint
CREATE INDEX "feedback_received_idx" ON "feedback" USING btree ("received_at");--> statement-breakpoint
CREATE INDEX "flag_changes_at_idx" ON "flag_changes" USING btree ("at");--> statement-breakpoint
CREATE INDEX "flag_changes_fingerprint_idx" ON "flag_changes" USING btree ("fingerprint");--> statement-breakpoint
CREATE INDEX "predictions_booking_idx" ON "predictions" USING btree ("booking_id","predicted_at");--> statement-breakpoint
CREATE INDEX "predictions_time_idx" ON "predictions" USING btree ("predicted_at");--> statement-breakpoint
CREATE INDEX "predictions_source_time_idx" ON "predictions" USING btree ("source","predicted_at");