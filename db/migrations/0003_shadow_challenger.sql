ALTER TABLE "predictions" ADD COLUMN "shadow_model_version" text;--> statement-breakpoint
ALTER TABLE "predictions" ADD COLUMN "shadow_model_delay" double precision;