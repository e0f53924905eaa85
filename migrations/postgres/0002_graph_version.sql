-- The trust graph's input version: one counter, raised in the same transaction as any write
-- that may change what the graph is built from (endorsement and service rows, an operator's
-- account status). An AppView apart from ingestion compares it to decide, exactly and in one
-- row read, whether its graph is current. Same as migrations/sqlite/0002_graph_version.sql.

CREATE TABLE graph_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO graph_version (id, version) VALUES (1, 0);
