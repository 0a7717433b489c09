import type { ModelRefusalReason } from '../telemetry/service-metrics.js';

/**
 * A model version refused: at registration (push, seed), at load, or by a rollout naming it. `reason` is the
 * bounded label it is counted under; the message says what to do.
 */
export class ModelVersionError extends Error {
  constructor(
    readonly reason: ModelRefusalReason,
    readonly version: string,
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** No row for the name: it was never pushed nor seeded where this process reads the registry. */
export class VersionNotRegisteredError extends ModelVersionError {
  constructor(version: string, where: string) {
    super(
      'not_registered',
      version,
      `no model ${JSON.stringify(version)} the service can load: it is not registered in ${where}; register it with npm run models -- push ${version}`,
    );
  }
}

/** A reserved name: it held artifacts that cannot be told apart, and is never registered again. */
export class VersionRetiredError extends ModelVersionError {
  constructor(version: string, note: string | null) {
    super(
      'retired',
      version,
      `no model ${JSON.stringify(version)} the service can load: the name is retired${note ? ` (${note})` : ''}; register the model under a new name`,
    );
  }
}

/** The name is bound to another artifact: a version never changes, a new model takes a new name. */
export class VersionConflictError extends ModelVersionError {
  constructor(
    version: string,
    readonly registeredDigest: string,
    readonly offeredDigest: string,
  ) {
    super(
      'version_conflict',
      version,
      `${version} is registered with digest ${registeredDigest}; this artifact's is ${offeredDigest}: a version never changes, register it under a new name`,
    );
  }
}

/** The stored graph and card no longer hash to the digest the name was registered with. */
export class DigestMismatchError extends ModelVersionError {
  constructor(version: string, registered: string, stored: string) {
    super(
      'digest_mismatch',
      version,
      `${version}'s stored artifact hashes to ${stored}, not to ${registered}, the digest it was registered with: it was altered after registration and is not served`,
    );
  }
}

/** The card describes another version (its `version`, or its graph's file name). */
export class CardMismatchError extends ModelVersionError {
  constructor(version: string, detail: string) {
    super('card_mismatch', version, `the card offered as ${version} ${detail}`);
  }
}

/** The card's features are not the ones this service computes, in the same order and units. */
export class FeatureSchemaError extends ModelVersionError {
  constructor(version: string, detail: string) {
    super('feature_schema', version, detail);
  }
}

/** A card the service cannot read, a graph ONNX Runtime cannot load, or a name the service cannot use. */
export class InvalidArtifactError extends ModelVersionError {
  constructor(version: string, detail: string) {
    super('invalid_artifact', version, `${version}: ${detail}`);
  }
}

/** The registry could not be read (the database refused or did not answer): nothing is known of the version. */
export class RegistryUnavailableError extends ModelVersionError {
  constructor(version: string, where: string, cause: Error) {
    super('registry_unavailable', version, `${version}: ${where} could not be read: ${cause.message}`);
  }
}
