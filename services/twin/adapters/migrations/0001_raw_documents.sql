-- The crawler's contract with change capture: one row per source item.
CREATE TABLE crawl_runs (
    id           uuid PRIMARY KEY,
    profile      text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    status       text        NOT NULL DEFAULT 'running'
);
CREATE INDEX crawl_runs_profile_started ON crawl_runs (profile, started_at DESC);

CREATE TABLE crawl_run_sources (
    run_id      uuid    NOT NULL REFERENCES crawl_runs (id) ON DELETE CASCADE,
    source_url  text    NOT NULL,
    platform    text    NOT NULL,
    status      text    NOT NULL CHECK (status IN ('ok', 'partial', 'failed')),
    new         integer NOT NULL DEFAULT 0,
    updated     integer NOT NULL DEFAULT 0,
    unchanged   integer NOT NULL DEFAULT 0,
    deleted     integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    truncated   boolean NOT NULL DEFAULT false,
    errors      jsonb   NOT NULL DEFAULT '[]'::jsonb,
    PRIMARY KEY (run_id, source_url)
);

CREATE TABLE raw_documents (
    id            uuid        PRIMARY KEY,
    profile       text        NOT NULL,
    platform      text        NOT NULL CHECK (platform IN ('medium', 'substack', 'linkedin', 'github', 'web')),
    category      text        NOT NULL CHECK (category IN ('article', 'post', 'code')),
    source_url    text        NOT NULL,
    canonical_url text        NOT NULL,
    title         text        NOT NULL,
    content       text        NOT NULL,
    author        text,
    published_at  timestamptz,
    content_hash  text        NOT NULL,
    fetched_at    timestamptz NOT NULL,
    crawl_run_id  uuid        NOT NULL,
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT raw_documents_profile_url UNIQUE (profile, canonical_url)
);
CREATE INDEX raw_documents_profile_source ON raw_documents (profile, source_url);
