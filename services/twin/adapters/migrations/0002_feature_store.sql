-- The logical feature store: cleaned documents (training snapshot) and embedded chunks (RAG
-- snapshot), written only by the feature workers through twin.adapters.pgvector_store.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE cleaned_documents (
    id               uuid        PRIMARY KEY,  -- the raw document's id
    profile          text        NOT NULL,
    platform         text        NOT NULL,
    category         text        NOT NULL,
    url              text        NOT NULL,
    title            text        NOT NULL,
    content          text        NOT NULL,
    raw_content_hash text        NOT NULL,
    lsn              bigint      NOT NULL,
    committed_at     timestamptz NOT NULL,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cleaned_documents_profile ON cleaned_documents (profile, category);

-- Profile, category, platform, url and title are copied from the document so that retrieval
-- reads one table. The embedding dimension (384) must match the embedder: the store checks it.
CREATE TABLE chunks (
    document_id  uuid    NOT NULL REFERENCES cleaned_documents (id) ON DELETE CASCADE,
    position     integer NOT NULL,
    profile      text    NOT NULL,
    category     text    NOT NULL,
    platform     text    NOT NULL,
    url          text    NOT NULL,
    title        text    NOT NULL,
    text         text    NOT NULL,
    token_count  integer NOT NULL,
    content_hash text    NOT NULL,
    metadata     jsonb   NOT NULL DEFAULT '{}'::jsonb,
    embedding    vector(384) NOT NULL,
    PRIMARY KEY (document_id, position)
);
-- Keep vectors inline in the heap page (a 384-d vector is 1.5 KB): exact search reads every
-- vector of a partition, and a detour through TOAST per row would triple its cost. Long chunk
-- texts (compressible) are the ones moved out of line instead.
ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE PLAIN;
-- Exact search and every filter start here. There is deliberately NO global HNSW index: with
-- pgvector 0.6 (no iterative scans) the planner would pick it for a filtered query and return
-- too few rows (INFRA.md, "the filter trap"). HNSW indexes are partial, one per large
-- (profile, category) partition, created by PgFeatureStore.maintain_indexes() and named
-- 'chunks_hnsw_' || left(md5(profile || E'\n' || category), 20) (never from user data directly).
CREATE INDEX chunks_filter ON chunks (profile, category, platform);

-- A delete leaves its lsn here so that a replayed older create/update cannot resurrect it.
CREATE TABLE document_tombstones (
    document_id uuid        PRIMARY KEY,
    lsn         bigint      NOT NULL,
    deleted_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dead_letters (
    id          bigserial   PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    position    text        NOT NULL,
    reason      text        NOT NULL,
    key         text,
    value       text
);

-- Row counts per retrieval partition, kept exact by statement-level triggers (cheap for COPY
-- and cascaded deletes alike). Retrieval reads them to choose exact search or HNSW.
CREATE TABLE chunk_counts (
    profile  text   NOT NULL,
    category text   NOT NULL,
    platform text   NOT NULL,
    n        bigint NOT NULL,
    PRIMARY KEY (profile, category, platform)
);

CREATE FUNCTION chunk_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chunk_counts AS c (profile, category, platform, n)
    SELECT profile, category, platform, count(*) FROM new_rows
    GROUP BY profile, category, platform ORDER BY profile, category, platform
    ON CONFLICT (profile, category, platform) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE FUNCTION chunk_counts_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE chunk_counts AS c SET n = c.n - d.n
    FROM (SELECT profile, category, platform, count(*) AS n FROM old_rows
          GROUP BY profile, category, platform) AS d
    WHERE c.profile = d.profile AND c.category = d.category AND c.platform = d.platform;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_count_insert AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION chunk_counts_add();
CREATE TRIGGER chunks_count_delete AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION chunk_counts_remove();
-- Chunks are replaced, never updated; an UPDATE (by hand) still keeps the counts right.
CREATE TRIGGER chunks_count_update_old AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION chunk_counts_remove();
CREATE TRIGGER chunks_count_update_new AFTER UPDATE ON chunks
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION chunk_counts_add();
CREATE FUNCTION chunk_counts_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM chunk_counts;
    RETURN NULL;
END $$;
CREATE TRIGGER chunks_count_truncate AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION chunk_counts_clear();
