// Package scorecard is Tani's credit scorecard: the reviewed model file
// (v1.yaml, embedded) and the pure function that scores a farmer's
// attested evidence with it — score, band, probability of default,
// recommended limit with its confidence, at most four adverse reasons and
// counterfactual hints. It reads no database and no clock: the same
// evidence always gives the same result, so that a journaled score can be
// recomputed and a hint is exact. It must never score anything but
// attested evidence handed to it by services/lending.
package scorecard
