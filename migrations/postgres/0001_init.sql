-- Guildhall index schema, PostgreSQL flavour. Same tables, columns and meaning as
-- migrations/sqlite/0001_init.sql; only the dialect differs.
-- Identifier columns use the "C" collation so ordering is byte-wise, as in SQLite.
-- Timestamps set by the store are unix milliseconds; datetimes copied from records
-- (created_at, expires_at) stay the RFC 3339 strings the author wrote.

CREATE TABLE operators (
    did             TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    handle          TEXT COLLATE "C",
    handle_verified BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN
                    ('active', 'takendown', 'suspended', 'deactivated', 'deleted', 'desynchronized', 'throttled')),
    display_name    TEXT,
    description     TEXT,
    website         TEXT,
    contact         TEXT,
    profile_uri     TEXT,
    profile_cid     TEXT,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX operators_handle ON operators (handle);
-- Deleting or invalidating a profile record finds its operator row by URI.
CREATE INDEX operators_profile_uri ON operators (profile_uri);
-- Read queries hide anything owned by an operator listed here; the partial index keeps that probe tiny.
CREATE INDEX operators_inactive ON operators (did) WHERE status <> 'active';

CREATE TABLE repos (
    did        TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    rev        TEXT,
    data_cid   TEXT,
    status     TEXT NOT NULL CHECK (status IN ('synced', 'desynchronized', 'resyncing')),
    tracked_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE records (
    uri        TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    did        TEXT COLLATE "C" NOT NULL,
    collection TEXT COLLATE "C" NOT NULL,
    rkey       TEXT COLLATE "C" NOT NULL,
    cid        TEXT NOT NULL,
    bytes      BYTEA NOT NULL,
    indexed_at BIGINT NOT NULL,
    UNIQUE (did, collection, rkey)
);

CREATE TABLE services (
    uri             TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    did             TEXT COLLATE "C" NOT NULL,
    rkey            TEXT COLLATE "C" NOT NULL,
    cid             TEXT NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT,
    version         TEXT,
    created_at      TEXT NOT NULL,
    latency_p95_ms  BIGINT,
    availability_bp BIGINT,
    success_rate_bp BIGINT,
    record_json     TEXT NOT NULL,
    -- Lower-cased name, description, tags and capabilities: the `q` filter is a substring test on it.
    search_text     TEXT NOT NULL,
    indexed_at      BIGINT NOT NULL
);
CREATE INDEX services_did ON services (did);
CREATE INDEX services_latency ON services (latency_p95_ms);
CREATE INDEX services_availability ON services (availability_bp);

CREATE TABLE service_capabilities (
    uri        TEXT COLLATE "C" NOT NULL REFERENCES services (uri) ON DELETE CASCADE,
    capability TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (uri, capability)
);
CREATE INDEX service_capabilities_capability ON service_capabilities (capability, uri);

CREATE TABLE service_regions (
    uri    TEXT COLLATE "C" NOT NULL REFERENCES services (uri) ON DELETE CASCADE,
    region TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (uri, region)
);
CREATE INDEX service_regions_region ON service_regions (region, uri);

CREATE TABLE service_prices (
    uri          TEXT COLLATE "C" NOT NULL REFERENCES services (uri) ON DELETE CASCADE,
    idx          BIGINT NOT NULL,
    model        TEXT NOT NULL,
    currency     TEXT,
    amount       TEXT,
    -- amount in 10^-9 currency units; saturates at the BIGINT maximum for absurd prices.
    amount_nanos BIGINT,
    unit         TEXT,
    period       TEXT,
    PRIMARY KEY (uri, idx)
);
CREATE INDEX service_prices_filter ON service_prices (currency, model, amount_nanos);
CREATE INDEX service_prices_model ON service_prices (model, amount_nanos);

CREATE TABLE service_tags (
    uri TEXT COLLATE "C" NOT NULL REFERENCES services (uri) ON DELETE CASCADE,
    tag TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (uri, tag)
);
CREATE INDEX service_tags_tag ON service_tags (tag, uri);

CREATE TABLE endorsements (
    -- Insertion order, kept across upserts: the keyset for stable pagination.
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uri         TEXT COLLATE "C" NOT NULL UNIQUE,
    author      TEXT COLLATE "C" NOT NULL,
    rkey        TEXT COLLATE "C" NOT NULL,
    cid         TEXT NOT NULL,
    subject     TEXT COLLATE "C" NOT NULL,
    service_uri TEXT COLLATE "C",
    service_cid TEXT,
    strength    BIGINT,
    comment     TEXT,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    indexed_at  BIGINT NOT NULL
);
CREATE INDEX endorsements_author ON endorsements (author, id);
CREATE INDEX endorsements_subject ON endorsements (subject, id);
CREATE INDEX endorsements_service ON endorsements (service_uri);

CREATE TABLE endorsement_capabilities (
    uri        TEXT COLLATE "C" NOT NULL REFERENCES endorsements (uri) ON DELETE CASCADE,
    capability TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (uri, capability)
);
CREATE INDEX endorsement_capabilities_capability ON endorsement_capabilities (capability);

CREATE TABLE rejections (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uri         TEXT COLLATE "C" NOT NULL,
    -- '' when the rejected thing had no CID; NOT NULL so the UNIQUE below dedupes replays.
    cid         TEXT NOT NULL,
    collection  TEXT COLLATE "C" NOT NULL,
    reason      TEXT NOT NULL,
    detail      TEXT,
    rejected_at BIGINT NOT NULL,
    UNIQUE (uri, cid, reason)
);
CREATE INDEX rejections_reason ON rejections (reason);

CREATE TABLE cursors (
    source     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    seq        BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE backfill (
    did        TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'done')),
    updated_at BIGINT NOT NULL
);
CREATE INDEX backfill_pending ON backfill (did) WHERE status = 'pending';
