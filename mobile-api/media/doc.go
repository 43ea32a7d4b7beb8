// Package media receives the photos and documents that records reference
// by hash. Phones on 2G lose connections mid-upload, so uploads speak the
// tus 1.0 resumable protocol (github.com/tus/tusd/v2): the size limit is
// announced before any byte is sent, an interrupted upload resumes from the
// offset the server reports, and only a completed upload whose bytes hash to
// the SHA-256 announced at creation is kept. Kept media are stored once per
// content, at <dir>/sha256/<first two hex digits>/<hash>, and listed in
// mobile.media, whose rows records are checked against.
//
// It must never keep bytes whose hash was not verified, never record a row
// for media not durably on disk, and never read or write records: it knows
// media only by their hash.
package media
