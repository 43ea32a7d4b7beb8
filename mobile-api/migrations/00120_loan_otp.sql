-- +goose Up
-- A one-time code may accept a loan offer instead of granting a consent:
-- it is then bound to the loan and to the SHA-256 of the offer's terms
-- that the SMS stated, and only a loan.accepted record naming both can
-- use it (a consent code cannot accept a loan, nor the reverse).
ALTER TABLE mobile.otp_challenges ADD COLUMN loan_id uuid;
ALTER TABLE mobile.otp_challenges ADD COLUMN terms_sha256 text;

-- +goose Down
ALTER TABLE mobile.otp_challenges DROP COLUMN terms_sha256;
ALTER TABLE mobile.otp_challenges DROP COLUMN loan_id;
