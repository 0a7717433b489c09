CREATE TABLE "model_versions" (
	"version" text PRIMARY KEY NOT NULL,
	"digest" text,
	"card" jsonb,
	"onnx" "bytea",
	"feature_schema" jsonb,
	"retired" boolean DEFAULT false NOT NULL,
	"note" text,
	"registered_at" timestamp with time zone DEFAULT now() NOT NULL,
	"registered_by" text NOT NULL,
	CONSTRAINT "model_versions_artifact" CHECK ("model_versions"."retired" or ("model_versions"."digest" is not null and "model_versions"."card" is not null and "model_versions"."onnx" is not null and "model_versions"."feature_schema" is not null)),
	CONSTRAINT "model_versions_digest" CHECK ("model_versions"."digest" is null or "model_versions"."digest" ~ '^sha256:[0-9a-f]{64}$')
);
--> statement-breakpoint
-- gbt-v1 named three artifacts (13 features, then two 14-feature retrains) before versions were bound to digests:
-- its counters, audit rows and reports mix them. The name stays reserved, never registered again.
INSERT INTO "model_versions" ("version", "retired", "note", "registered_by") VALUES (
	'gbt-v1', true,
	'served three different artifacts (13 features, then two 14-feature retrains) before versions were bound to digests; gbt-v2 is its last artifact',
	'migration 0002_model_registry'
);
