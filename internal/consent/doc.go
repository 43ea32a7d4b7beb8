// Package consent is the one gate between a bank or distributor and a
// farmer's data, and consent as a resource. Every read of farmer data for
// an external organization goes through Gate.Read, which checks that the
// farmer holds a live consent naming the caller's organization and
// covering the scopes read, and writes an access-log row in the same
// transaction as the read; a denial writes a denied row and nothing else.
// Service serves organizations' consent requests and their consents
// (status, scopes, expiry, journal entries and receipt), operators' view
// of the access log, and journals the consent state changes it decides
// (requests, expiries); the farmer's own answers are signed records.
//
// Gate.Allows answers, without logging, whether an organization holds a
// live consent covering a scope: for deciding whether to tell it that
// something happened (webhooks), never for reading the data itself.
//
// It must never serve data itself, and no other code path may read farmer
// data for an external organization.
package consent
