"""The DuckDB schema, as an ordered list of migrations applied once each.

Append new migrations; never edit one that has shipped: databases in the field have run it.
"""

from __future__ import annotations

import logging

import duckdb

logger = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: users, tokens, settings, preconfigured models and their parts, invocations.
    """
    CREATE SEQUENCE user_ids START 1;
    CREATE TABLE users (
        id INTEGER PRIMARY KEY DEFAULT nextval('user_ids'),
        username VARCHAR NOT NULL UNIQUE,
        password_hash VARCHAR,
        first_name VARCHAR,
        last_name VARCHAR,
        admin BOOLEAN NOT NULL DEFAULT false,
        created TIMESTAMP NOT NULL DEFAULT current_timestamp,
        last_login TIMESTAMP
    );
    INSERT INTO users (username, first_name, last_name, admin)
        VALUES ('enfugue', 'Default', 'User', true);

    CREATE SEQUENCE token_ids START 1;
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY DEFAULT nextval('token_ids'),
        user_id INTEGER NOT NULL,
        token_hash VARCHAR NOT NULL UNIQUE,
        created TIMESTAMP NOT NULL,
        expires TIMESTAMP NOT NULL,
        revoked TIMESTAMP
    );

    CREATE TABLE settings (
        key VARCHAR PRIMARY KEY,
        value JSON NOT NULL
    );

    -- Column names are the attribute names of Enfugue's DiffusionModel* objects. The part
    -- tables have no keys: DuckDB checks keys eagerly, and PATCH deletes and re-inserts parts
    -- of the same model in one transaction.
    CREATE TABLE models (
        name VARCHAR PRIMARY KEY,
        model VARCHAR NOT NULL,
        size INTEGER NOT NULL,
        prompt VARCHAR NOT NULL DEFAULT '',
        negative_prompt VARCHAR NOT NULL DEFAULT '',
        created TIMESTAMP NOT NULL DEFAULT current_timestamp
    );
    CREATE TABLE model_refiners (diffusion_model_name VARCHAR NOT NULL, model VARCHAR NOT NULL, size INTEGER NOT NULL);
    CREATE TABLE model_inpainters (
        diffusion_model_name VARCHAR NOT NULL, model VARCHAR NOT NULL, size INTEGER NOT NULL
    );
    CREATE TABLE model_vaes (diffusion_model_name VARCHAR NOT NULL, name VARCHAR NOT NULL);
    CREATE TABLE model_schedulers (diffusion_model_name VARCHAR NOT NULL, name VARCHAR NOT NULL);
    CREATE TABLE model_loras (diffusion_model_name VARCHAR NOT NULL, model VARCHAR NOT NULL, weight DOUBLE NOT NULL);
    CREATE TABLE model_lycoris (diffusion_model_name VARCHAR NOT NULL, model VARCHAR NOT NULL, weight DOUBLE NOT NULL);
    CREATE TABLE model_inversions (diffusion_model_name VARCHAR NOT NULL, model VARCHAR NOT NULL);
    CREATE TABLE model_configs (
        diffusion_model_name VARCHAR NOT NULL,
        configuration_key VARCHAR NOT NULL,
        configuration_value JSON NOT NULL
    );

    CREATE SEQUENCE invocation_ids START 1;
    CREATE TABLE invocations (
        id INTEGER PRIMARY KEY DEFAULT nextval('invocation_ids'),
        uuid VARCHAR NOT NULL UNIQUE,
        user_id INTEGER NOT NULL,
        status VARCHAR NOT NULL,
        request JSON NOT NULL,
        plan JSON,
        created TIMESTAMP NOT NULL,
        started TIMESTAMP,
        ended TIMESTAMP,
        step INTEGER,
        total INTEGER,
        outputs INTEGER NOT NULL DEFAULT 0,
        images JSON,
        error VARCHAR
    );
    CREATE INDEX invocations_by_user ON invocations (user_id, created);
    """,
    # 2: how many times an invocation started; one interrupted (its Planner lost) runs again.
    """
    ALTER TABLE invocations ADD COLUMN attempts INTEGER DEFAULT 0;
    """,
]


def current_version(connection: duckdb.DuckDBPyConnection) -> int:
    connection.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(connection: duckdb.DuckDBPyConnection) -> int:
    """Apply the migrations this database has not seen, each in its own transaction."""
    version = current_version(connection)
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        connection.execute("BEGIN TRANSACTION")
        try:
            connection.execute(script)
            connection.execute("INSERT INTO schema_version VALUES (?)", [number])
            connection.execute("COMMIT")
        except Exception:
            connection.execute("ROLLBACK")
            raise
        logger.info("applied schema migration %s", number)
    return len(MIGRATIONS)
