-- An invite has two links (issue 14): the one emailed to the invitee, which proves the address
-- and so may create the account, and the one shown to the inviter to copy, which may only be
-- accepted by someone already logged in as the invited address. Invites made before this have
-- only the second.
ALTER TABLE invites ADD COLUMN mail_token_hash TEXT;
CREATE UNIQUE INDEX invites_mail_token ON invites (mail_token_hash);
