import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../service/storage/database.js';
import { tempDir } from '../../service/test-support/harness.js';
import {
  type PrivatePostgres,
  privatePostgresAvailable,
  startPrivatePostgres,
} from '../../service/test-support/private-postgres.js';
import { runChild } from '../../service/test-support/run-child.js';

/*
 * Compose's scripts for Postgres against a server that checks passwords, as compose's does (scram-sha-256 for
 * every TCP client): Grafana's role logs in with its secret, and the backup with the service's password file.
 * The scripts run as child processes awaited (a synchronous child would stall this worker's RPC with Vitest).
 */
const INIT = 'deploy/compose/postgres-init/10-grafana-role.sh';
const BACKUP = 'deploy/backup/backup.sh';
const available = privatePostgresAvailable();

// The service's password, of the characters a URL would need escaped.
const DELAY_PASSWORD = 'p@ss:w/rd \'with\' "quotes" $HOME';
const GRAFANA_PASSWORD = "graf'ana\\pass;word";

describe.skipIf(!available)("compose's Postgres scripts, on a server asking for passwords", () => {
  let server: PrivatePostgres;
  let port: string;
  const dir = tempDir('delay-compose-pg-');
  const secret = (name: string, value: string) => {
    writeFileSync(join(dir, name), value);
    return join(dir, name);
  };
  const login = async (user: string, password: string) => {
    const sql = postgres({
      host: '127.0.0.1',
      port: Number(port),
      database: 'delay',
      user,
      password,
      max: 1,
      connect_timeout: 5,
      onnotice: () => {},
    });
    try {
      const [row] = await sql<{ user: string }[]>`select current_user as user`;
      return row?.user;
    } finally {
      await sql.end({ timeout: 1 });
    }
  };
  // As the image's entrypoint runs the init scripts: its superuser, without a password (the socket's trust).
  const initScript = (passwordFile: string) =>
    runChild(INIT, [], {
      PGHOST: '127.0.0.1',
      PGPORT: port,
      POSTGRES_USER: 'postgres',
      POSTGRES_DB: 'delay',
      GRAFANA_DB_PASSWORD_FILE: passwordFile,
    });

  beforeAll(async () => {
    server = await startPrivatePostgres();
    port = new URL(server.url).port;
    const admin = postgres(server.url, { max: 1, onnotice: () => {} });
    // compose's POSTGRES_USER is the schema's owner and a superuser.
    await admin.unsafe(
      `create role delay login superuser password '${DELAY_PASSWORD.replaceAll("'", "''")}'`,
    );
    await admin`create database delay owner delay`;
    const [{ hba_file: hba } = { hba_file: '' }] = await admin<{ hba_file: string }[]>`show hba_file`;
    writeFileSync(
      hba,
      [
        'local all all trust',
        'host all postgres 127.0.0.1/32 trust',
        'host all all 127.0.0.1/32 scram-sha-256',
        '',
      ].join('\n'),
    );
    await admin`select pg_reload_conf()`;
    await admin.end({ timeout: 1 });
  });
  afterAll(async () => {
    await server?.destroy();
  });

  it("creates Grafana's login with the secret's password, before or after the service's migrations, and changes it when run again", async () => {
    // Compose's order: the init script when the volume is first initialised, the service's migrations after.
    const first = await initScript(secret('grafana_db_password', GRAFANA_PASSWORD));
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('role delay_grafana may log in');
    const service = await openDatabase({
      url: `postgres://delay:${encodeURIComponent(DELAY_PASSWORD)}@127.0.0.1:${port}/delay`,
      dataDir: 'unused',
    });
    await service.close();
    expect(await login('delay_grafana', GRAFANA_PASSWORD)).toBe('delay_grafana');
    await expect(login('delay_grafana', 'not-the-password')).rejects.toThrow(
      /password authentication failed/,
    );

    // Again on a volume initialised before: the role exists (the migrations made it NOLOGIN where the script had
    // not run); the password is the new one.
    const again = await initScript(secret('grafana_db_password', 'a-new-grafana-password'));
    expect(again.code, again.stderr).toBe(0);
    await expect(login('delay_grafana', GRAFANA_PASSWORD)).rejects.toThrow(/password authentication failed/);
    expect(await login('delay_grafana', 'a-new-grafana-password')).toBe('delay_grafana');
  });

  it('refuses a missing or empty password file, changing nothing', async () => {
    const missing = await initScript(join(dir, 'absent'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      /cannot read .*absent \(the secret grafana_db_password, from GRAFANA_DB_PASSWORD\)/,
    );
    const empty = await initScript(secret('empty', ''));
    expect(empty.code).toBe(1);
    expect(empty.stderr).toMatch(/is empty: set GRAFANA_DB_PASSWORD/);
  });

  it('is executable, as the image runs such a script rather than sourcing it into its entrypoint', () => {
    expect(statSync(INIT).mode & 0o111).toBe(0o111);
    expect(readFileSync(INIT, 'utf8').split('\n')[0]).toBe('#!/bin/sh');
  });

  it("backs up with the service's password file, the URL holding no password", async () => {
    const backups = tempDir('delay-compose-backups-');
    const env = { DATABASE_URL: `postgres://delay@127.0.0.1:${port}/delay`, BACKUP_DIR: backups };
    const refused = await runChild('sh', [BACKUP], env);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/no password supplied|password authentication failed/);
    expect(readdirSync(backups)).toEqual([]);
    const result = await runChild('sh', [BACKUP], {
      ...env,
      DATABASE_PASSWORD_FILE: secret('postgres_password', DELAY_PASSWORD),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(readdirSync(backups)).toHaveLength(1);
  });
});
