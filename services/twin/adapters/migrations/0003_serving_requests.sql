-- Every served request, for monitoring: latency, tokens, the chunks retrieved and the model version
-- that answered. Prompts and answers are kept only while TWIN_SERVING__LOG_PROMPTS is on (NULL else).
CREATE TABLE serving_requests (
    id                 bigserial   PRIMARY KEY,
    request_id         text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    profile            text        NOT NULL,
    route              text        NOT NULL,  -- chat, completions, embeddings
    model              text        NOT NULL,  -- the model id the client asked for
    model_version      integer,               -- the registry version that answered; NULL: base model
    status             integer     NOT NULL,  -- HTTP status
    error              text,
    stream             boolean     NOT NULL DEFAULT false,
    latency_s          double precision NOT NULL,
    ttft_s             double precision,
    retrieval_s        double precision,
    prompt_tokens      integer,
    completion_tokens  integer,
    finish_reason      text,
    target             text,
    chunk_ids          jsonb       NOT NULL DEFAULT '[]'::jsonb,  -- [[document id, position], ...]
    links              jsonb       NOT NULL DEFAULT '[]'::jsonb,
    prompt             text,
    response           text
);
CREATE INDEX serving_requests_profile_time ON serving_requests (profile, created_at);
