// Package erasure takes operators' requests to forget a farmer and follows
// them through: it stores the request, journals it (no personal data: the
// farmer's id, the reason, who asked), puts it on the ERASURE stream, and
// answers how far each owner of farmer data (mobile-api, ingest, attest,
// webhooks, consent, and the journal, erased by attest) has got. It
// erases nothing itself and never reads another service's tables: only
// their erasure_progress views.
package erasure
