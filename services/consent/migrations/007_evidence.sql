-- How a signed consent is proven (issue #11, point 5): the SHA-256 of the signature drawn on
-- the screen or of the photo of the signed form. The image itself is sealed in the identity
-- vault (intake.evidence), under the person's key, and erased with them.
ALTER TABLE consents ADD COLUMN evidence_sha256 text;
