package clienttest

import (
	"fmt"
	"time"
)

// Square is a closed square plot boundary of side d degrees at lon, lat.
func Square(lon, lat, d float64) map[string]any {
	return map[string]any{"type": "Polygon", "coordinates": [][][2]float64{{{lon, lat}, {lon + d, lat}, {lon + d, lat - d}, {lon, lat - d}, {lon, lat}}}}
}

// Payloads returns a valid payload of every record type but consent.granted
// (which needs a code sent to the farmer) for one farmer and plot. The loan
// records name loans and products that do not exist: they are well formed,
// but mobile-api refuses them (ingest tests publish them to the stream
// directly).
func Payloads(farmerID, plotID string, now time.Time) map[string]map[string]any {
	day := func(days int) string { return now.AddDate(0, 0, days).Format(time.DateOnly) }
	return map[string]map[string]any{
		"farmer.registered": {"farmer_id": farmerID, "name": "Siti Aminah", "national_id": fmt.Sprintf("3374%012d", now.UnixNano()%1e12),
			"phone": "+6281234567890", "village": "Sukamaju", "gender": "female", "birth_year": 1980},
		"plot.mapped": {"farmer_id": farmerID, "plot_id": plotID, "boundary": Square(110.4, -7.25, 0.001),
			"declared_area": map[string]any{"value": 1.2, "unit": "ha"}, "tenure": "owned", "gps_accuracy_m": 3.5, "mock_location": false},
		"crop.planted": {"farmer_id": farmerID, "plot_id": plotID, "crop": "rice", "variety": "IR64", "planted_on": day(-60), "expected_harvest_on": day(50)},
		"input.applied": {"farmer_id": farmerID, "plot_id": plotID, "product": "Urea", "category": "fertilizer",
			"quantity": map[string]any{"value": 50, "unit": "kg"}, "applied_on": day(-40)},
		"harvest.recorded": {"farmer_id": farmerID, "plot_id": plotID, "crop": "rice", "quantity": map[string]any{"value": 4.2, "unit": "t"},
			"quality_grade": "A", "harvested_on": day(-2)},
		"sale.recorded": {"farmer_id": farmerID, "buyer": "KUD Makmur", "crop": "rice", "quantity": map[string]any{"value": 20, "unit": "quintal"},
			"price": map[string]any{"amount": 1100000000, "currency": "IDR"}, "sold_on": day(-1)},
		"consent.revoked": {"farmer_id": farmerID, "consent_id": "7f1d1c9e-1f1f-4a55-9a0a-3a2b1c0d9e8f", "reason": "changed bank"},
		"loan.applied": {"farmer_id": farmerID, "loan_id": "2b7c0f4e-8d1a-4c3b-9e5f-6a7b8c9d0e1f", "product_id": "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a",
			"amount": map[string]any{"amount": 500000000, "currency": "IDR"}, "purpose": "seed and fertilizer"},
		"loan.accepted": {"farmer_id": farmerID, "loan_id": "2b7c0f4e-8d1a-4c3b-9e5f-6a7b8c9d0e1f",
			"terms_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "otp_challenge_id": "0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b", "otp_code": "123456"},
		"repayment.collected": {"farmer_id": farmerID, "loan_id": "2b7c0f4e-8d1a-4c3b-9e5f-6a7b8c9d0e1f",
			"amount": map[string]any{"amount": 100000000, "currency": "IDR"}, "payer_reference": "RB-0001", "collected_on": day(-1)},
	}
}
