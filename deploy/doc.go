// Package deploy holds no code: its tests check the deployment artifacts
// beside it (Kubernetes manifests, Helm values, alert rules, dashboards)
// against what Tani really is — its modules, its flags, its metrics — so
// that a manifest cannot drift into naming a flag, a Secret or a metric
// that does not exist.
package deploy
