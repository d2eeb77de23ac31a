-- A commission's members, from the directory: only they act for it.
ALTER TABLE partners ADD COLUMN members text[] NOT NULL DEFAULT '{}';
