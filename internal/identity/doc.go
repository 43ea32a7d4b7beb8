// Package identity says who is calling Tani from outside the field: the
// organizations (operator, field organization, bank, distributor), their API
// keys and, later, their people. Every service authenticates banks and
// distributors through it, so that "which organization is this" has one
// answer.
//
// It never decides what a caller may read about a farmer: that is the
// consent gate's job (internal/consent), which takes the Principal this
// package establishes.
package identity
