-- AppView support. Same as migrations/postgres/0004_appview.sql.
--
-- Secrets one Guildhall instance keeps across restarts and shares between the processes
-- that serve the same index (the search-cursor HMAC key): written once, never rotated here.
CREATE TABLE instance_secrets (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);

-- searchServices reads candidates per operator in (did, uri) order.
CREATE INDEX services_did_uri ON services (did, uri);
