-- The ledger (issue #12). Same tables as migrations/sqlite/0004_ledger.sql.
--
-- The rules live in crates/ledger; these tables hold what they decided. Counters are
-- integers of 10⁻⁹ units. Owners are DIDs, or '$issuance' / '$fees' for the system
-- accounts (no DID starts with '$').
CREATE TABLE ledger_accounts (
    owner           TEXT NOT NULL,
    currency        TEXT NOT NULL,
    debits_pending  BIGINT NOT NULL DEFAULT 0,
    debits_posted   BIGINT NOT NULL DEFAULT 0,
    credits_pending BIGINT NOT NULL DEFAULT 0,
    credits_posted  BIGINT NOT NULL DEFAULT 0,
    updated_at      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, currency),
    -- The rules already enforce these; the database refuses a write that breaks them anyway.
    CHECK (debits_pending >= 0 AND debits_posted >= 0
           AND credits_pending >= 0 AND credits_posted >= 0),
    CHECK (owner = '$issuance' OR debits_posted + debits_pending <= credits_posted)
);

-- Immutable transfers, keyed by the client's id; only a hold's state and a posted
-- transfer's refunded sum change later. The req_* columns are the request as given, which
-- a retry must repeat; debit_owner/credit_owner/amount are what actually moved.
CREATE TABLE ledger_transfers (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                  TEXT NOT NULL UNIQUE,
    kind                TEXT NOT NULL CHECK (kind IN ('post', 'hold', 'capture', 'void', 'refund')),
    req_debit_owner     TEXT NOT NULL,
    req_debit_currency  TEXT NOT NULL,
    req_credit_owner    TEXT NOT NULL,
    req_credit_currency TEXT NOT NULL,
    req_amount          BIGINT NOT NULL,
    ref_id              TEXT,
    timeout_ms          BIGINT,
    memo                TEXT,
    debit_owner         TEXT NOT NULL,
    credit_owner        TEXT NOT NULL,
    currency            TEXT NOT NULL,
    amount              BIGINT NOT NULL CHECK (amount > 0),
    at_ms               BIGINT NOT NULL,
    hold_state          TEXT CHECK (hold_state IN ('pending', 'captured', 'voided', 'expired')),
    refunded            BIGINT NOT NULL DEFAULT 0 CHECK (refunded >= 0 AND refunded <= amount)
);

-- An account's history, newest first (listTransfers pages on seq).
CREATE INDEX ledger_transfers_debit ON ledger_transfers (debit_owner, seq);
CREATE INDEX ledger_transfers_credit ON ledger_transfers (credit_owner, seq);
-- The sweeper's question: which holds are pending past their timeout.
CREATE INDEX ledger_holds_pending ON ledger_transfers (timeout_ms) WHERE hold_state = 'pending';
