-- The directory document, one version at a time.
CREATE TABLE directory (
    id         integer     PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    version    integer     NOT NULL,
    document   jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
