package record

// MediaHashes returns the SHA-256 hashes of the media a checked payload
// references (a farmer's photo today). Media travel separately from
// records, often later: a record whose media have not arrived is
// incomplete, not invalid.
func MediaHashes(payload Payload) []string {
	switch p := payload.(type) {
	case *FarmerRegistered:
		if p.PhotoHash != "" {
			return []string{p.PhotoHash}
		}
	case *DeliveryConfirmed:
		return []string{p.PhotoHash}
	}
	return nil
}
