-- The credit ledger: accounts per (guild, user), an append-only journal, jobs, allowances and
-- the paid account's guard. Rules and invariants: docs/ledger.md.
-- Times are UTC text 'YYYY-MM-DD HH:MM:SS.ffffff' (sortable, and SQLite's date() reads them).

CREATE TABLE guild_allowances (
    guild_id   INTEGER PRIMARY KEY,
    amount     INTEGER NOT NULL CHECK (amount >= 0),
    period     TEXT    NOT NULL CHECK (period IN ('day', 'week', 'month', 'none')),
    updated_by TEXT    NOT NULL,
    updated_at TEXT    NOT NULL
);

CREATE TABLE role_allowances (
    guild_id   INTEGER NOT NULL,
    role_id    INTEGER NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount > 0),
    updated_by TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (guild_id, role_id)
);

-- The cached balance. `extra` is the part of `available` that came from grants (spent last,
-- kept across refills); the rest is the period's allowance. The CHECKs make the cached row
-- conserve credits on its own: available + held + spent = granted.
CREATE TABLE accounts (
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    available      INTEGER NOT NULL DEFAULT 0 CHECK (available >= 0),
    held           INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0),
    spent          INTEGER NOT NULL DEFAULT 0 CHECK (spent >= 0),
    granted        INTEGER NOT NULL DEFAULT 0,
    extra          INTEGER NOT NULL DEFAULT 0 CHECK (extra >= 0),
    refilled_for   TEXT,             -- first day (ISO date) of the period last refilled
    role_ids       TEXT    NOT NULL DEFAULT '[]',  -- the member's roles as last seen (JSON)
    blocked_reason TEXT,
    blocked_by     TEXT,
    blocked_at     TEXT,
    blocked        INTEGER NOT NULL DEFAULT 0 CHECK (blocked IN (0, 1)),
    created_at     TEXT    NOT NULL,
    PRIMARY KEY (guild_id, user_id),
    CHECK (extra <= available),
    CHECK (available + held + spent = granted)
);

CREATE TABLE jobs (
    job_key        TEXT    PRIMARY KEY,  -- the Discord interaction id: one job per interaction
    guild_id       INTEGER NOT NULL,
    user_id        INTEGER NOT NULL,
    channel_id     INTEGER,
    status         TEXT    NOT NULL CHECK (status IN
                       ('queued', 'running', 'succeeded', 'delivered', 'failed', 'cancelled')),
    params         TEXT    NOT NULL,     -- JSON of the job's parameters
    cost           INTEGER NOT NULL CHECK (cost > 0),
    extra_used     INTEGER NOT NULL CHECK (extra_used >= 0 AND extra_used <= cost),
    account_micros INTEGER NOT NULL CHECK (account_micros >= 0),  -- estimated, 1e-6 units
    seed           INTEGER,
    queued_at      TEXT    NOT NULL,
    started_at     TEXT,
    finished_at    TEXT,
    delivered_at   TEXT,
    result_path    TEXT,
    balance_before TEXT,                 -- x-remaining-credits seen before / after (decimal)
    balance_after  TEXT,
    error          TEXT,
    FOREIGN KEY (guild_id, user_id) REFERENCES accounts (guild_id, user_id),
    CHECK (status NOT IN ('succeeded', 'delivered') OR result_path IS NOT NULL)
);
CREATE INDEX jobs_open ON jobs (status) WHERE status IN ('queued', 'running');
CREATE INDEX jobs_undelivered ON jobs (finished_at) WHERE status = 'succeeded';
CREATE INDEX jobs_member ON jobs (guild_id, user_id, queued_at);
CREATE INDEX jobs_finished ON jobs (guild_id, finished_at);

-- The journal. Every change of an account is one row, written in the same transaction as
-- the cached balance. Effects: grant/adjust/set/refill add `amount` to available and granted
-- (adjust and set are signed); hold moves amount available→held; capture held→spent;
-- release held→available. `extra` is the change of the account's extra part.
CREATE TABLE entries (
    id         INTEGER PRIMARY KEY,
    guild_id   INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('grant', 'adjust', 'set', 'refill', 'hold',
                                                'capture', 'release', 'block', 'unblock')),
    amount     INTEGER NOT NULL,
    extra      INTEGER NOT NULL DEFAULT 0,
    job_key    TEXT,
    period_key TEXT,
    actor      TEXT    NOT NULL,
    reason     TEXT,
    created_at TEXT    NOT NULL,
    FOREIGN KEY (guild_id, user_id) REFERENCES accounts (guild_id, user_id),
    CHECK (kind NOT IN ('hold', 'capture', 'release') OR (job_key IS NOT NULL AND amount > 0)),
    CHECK (kind NOT IN ('grant', 'refill') OR amount > 0),
    CHECK (kind <> 'refill' OR period_key IS NOT NULL),
    CHECK (kind NOT IN ('block', 'unblock') OR amount = 0)
);
CREATE INDEX entries_account ON entries (guild_id, user_id, id);
-- Exactly one hold and at most one capture-or-release per job; one refill per period.
CREATE UNIQUE INDEX entries_one_hold ON entries (job_key) WHERE kind = 'hold';
CREATE UNIQUE INDEX entries_one_terminal ON entries (job_key) WHERE kind IN ('capture', 'release');
CREATE UNIQUE INDEX entries_one_refill ON entries (guild_id, user_id, period_key)
    WHERE kind = 'refill';

CREATE TRIGGER entries_no_update BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'entries are append-only');
END;

CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
BEGIN
    SELECT RAISE(ABORT, 'entries are append-only');
END;

-- The operator's paid account (one row): the last x-remaining-credits seen and the pause.
CREATE TABLE account_guard (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    remaining    TEXT,                  -- decimal text; NULL until a response was seen
    seen_at      TEXT,
    paused_kind  TEXT CHECK (paused_kind IN ('out_of_credits', 'misconfigured', 'admin')),
    paused_reason TEXT,
    paused_by    TEXT,
    paused_at    TEXT,
    resumed_by   TEXT,
    resumed_at   TEXT,
    CHECK ((paused_kind IS NULL) = (paused_reason IS NULL))
);
INSERT INTO account_guard (id) VALUES (1);
