-- The team mailbox the directory gives each organisation (not the one set through the API):
-- magic links go only to addresses of its mail domain.
ALTER TABLE recipients ADD COLUMN directory_email text;
UPDATE recipients SET directory_email = email;
