// Package consent is the one gate between a bank or distributor and a
// farmer's data. Every read of farmer data for an external organization
// goes through Gate.Read, which checks that the farmer holds a live consent
// naming the caller's organization and covering the scopes read, and writes
// an access-log row in the same transaction as the read; a denial writes a
// denied row and nothing else.
//
// Gate.Allows answers, without logging, whether an organization holds a
// live consent covering a scope: for deciding whether to tell it that
// something happened (webhooks), never for reading the data itself.
//
// It must never serve data itself, and no other code path may read farmer
// data for an external organization.
package consent
