package deploy_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tani-platform/tani/internal/app"
	"github.com/tani-platform/tani/internal/app/cli"
)

const k8sDir = "kubernetes"

// object is one Kubernetes object, unstructured.
type object map[string]any

func (o object) kind() string { return str(o["kind"]) }
func (o object) name() string { return str(get(o, "metadata", "name")) }
func (o object) id() string   { return o.kind() + "/" + o.name() }

// get walks nested maps; a missing step yields nil.
func get(v any, path ...string) any {
	if o, ok := v.(object); ok {
		v = map[string]any(o)
	}
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

// decodeAll parses every YAML document of r.
func decodeAll(t *testing.T, name string, r io.Reader) []object {
	t.Helper()
	dec := yaml.NewDecoder(r)
	var out []object
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if doc != nil {
			out = append(out, object(doc))
		}
	}
}

// kustomization is what the test reads of kustomization.yaml.
type kustomization struct {
	Resources       []string `yaml:"resources"`
	SecretGenerator []struct {
		Name    string   `yaml:"name"`
		Files   []string `yaml:"files"`
		Options struct {
			DisableNameSuffixHash bool `yaml:"disableNameSuffixHash"`
		} `yaml:"options"`
	} `yaml:"secretGenerator"`
}

// deployment is the set of objects kubectl apply -k would create, plus
// what the operators it relies on create from them, indexed for lookups.
type deployment struct {
	objects []object
	// secrets and configMaps map a name to its keys.
	secrets, configMaps map[string]map[string]bool
	services, pvcs      map[string]bool
	hashedSecrets       map[string]bool // generated with a name suffix
}

func loadDeployment(t *testing.T) (*deployment, kustomization) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	d := &deployment{
		secrets: map[string]map[string]bool{}, configMaps: map[string]map[string]bool{},
		services: map[string]bool{}, pvcs: map[string]bool{}, hashedSecrets: map[string]bool{},
	}
	for _, res := range k.Resources {
		f, err := os.Open(filepath.Join(k8sDir, res))
		if err != nil {
			t.Fatalf("resource %s: %v", res, err)
		}
		d.objects = append(d.objects, decodeAll(t, res, f)...)
		f.Close()
	}
	for _, g := range k.SecretGenerator {
		keys := map[string]bool{}
		for _, f := range g.Files {
			key, _, ok := strings.Cut(f, "=")
			if !ok {
				key = filepath.Base(f)
			}
			keys[key] = true
		}
		d.secrets[g.Name] = keys
		if !g.Options.DisableNameSuffixHash {
			d.hashedSecrets[g.Name] = true
		}
	}
	for _, o := range d.objects {
		switch o.kind() {
		case "Secret":
			keys := map[string]bool{}
			for _, field := range []string{"data", "stringData"} {
				for key := range asMap(o[field]) {
					keys[key] = true
				}
			}
			d.secrets[o.name()] = keys
		case "ConfigMap":
			keys := map[string]bool{}
			for key := range asMap(o["data"]) {
				keys[key] = true
			}
			d.configMaps[o.name()] = keys
		case "Service":
			d.services[o.name()] = true
		case "PersistentVolumeClaim":
			d.pvcs[o.name()] = true
		case "Cluster":
			// CloudNativePG creates, for a Cluster X, the Secret X-app
			// (the application owner's credentials) and the Services
			// X-rw (the primary), X-ro (replicas) and X-r (any).
			d.secrets[o.name()+"-app"] = setOf("username", "password", "host", "port", "dbname", "uri", "jdbc-uri", "pgpass")
			for _, s := range []string{"-rw", "-ro", "-r"} {
				d.services[o.name()+s] = true
			}
		}
	}
	// The NATS chart's release "nats" (nats-values.yaml) creates the
	// client Service "nats".
	d.services["nats"] = true
	return d, k
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func setOf(keys ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return m
}

func (d *deployment) ofKind(kind string) []object {
	var out []object
	for _, o := range d.objects {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// upFlags returns the TANI_* variable of every flag of `tani up`.
func upFlags() map[string]string {
	var cfg app.Config
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { out[cli.EnvName(f.Name)] = f.Name })
	return out
}

func TestKubernetes_Manifests(t *testing.T) {
	d, k := loadDeployment(t)
	flags := upFlags()

	t.Run("OK_EveryFileIsAResource", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		notResources := setOf("kustomization.yaml", "nats-values.yaml")
		for _, f := range files {
			if base := filepath.Base(f); !notResources[base] && !slices.Contains(k.Resources, base) {
				t.Errorf("%s is not listed in kustomization.yaml's resources", base)
			}
		}
	})

	t.Run("OK_EveryObjectIsWellFormed", func(t *testing.T) {
		seen := map[string]bool{}
		for _, o := range d.objects {
			if str(o["apiVersion"]) == "" || o.kind() == "" || o.name() == "" {
				t.Errorf("object without apiVersion, kind or name: %v", o)
			}
			if seen[o.id()] {
				t.Errorf("%s defined twice", o.id())
			}
			seen[o.id()] = true
		}
		if len(d.ofKind("Deployment")) < 6 {
			t.Errorf("got %d Deployments, want one per target", len(d.ofKind("Deployment")))
		}
	})

	t.Run("OK_ConfigNamesRealFlags", func(t *testing.T) {
		for name := range d.configMaps["tani-config"] {
			if _, ok := flags[name]; !ok {
				t.Errorf("ConfigMap tani-config sets %s, which is no flag of `tani up`", name)
			}
		}
	})

	for _, dep := range d.ofKind("Deployment") {
		t.Run(dep.name(), func(t *testing.T) { checkDeployment(t, d, dep, flags) })
	}

	t.Run("OK_ServicesSelectPods", func(t *testing.T) {
		for _, svc := range d.ofKind("Service") {
			sel := asMap(get(svc, "spec", "selector"))
			var matched []object
			for _, dep := range d.ofKind("Deployment") {
				if selects(sel, asMap(get(dep, "spec", "template", "metadata", "labels"))) {
					matched = append(matched, dep)
				}
			}
			if len(matched) == 0 {
				t.Errorf("Service %s selects no pods", svc.name())
			}
			for _, p := range list(get(svc, "spec", "ports")) {
				if target := str(get(p, "targetPort")); target != "" {
					for _, dep := range matched {
						if !hasPort(dep, target) {
							t.Errorf("Service %s targets port %q, which %s does not name", svc.name(), target, dep.name())
						}
					}
				}
			}
		}
	})

	t.Run("OK_DatabaseIsSynchronousWithPostGIS", func(t *testing.T) {
		clusters := d.ofKind("Cluster")
		if len(clusters) != 1 {
			t.Fatalf("got %d CloudNativePG Clusters, want 1", len(clusters))
		}
		c := clusters[0]
		if n, _ := get(c, "spec", "instances").(int); n < 2 {
			t.Errorf("instances %v: a failover needs a replica", get(c, "spec", "instances"))
		}
		if n, _ := get(c, "spec", "postgresql", "synchronous", "number").(int); n < 1 {
			t.Errorf("synchronous.number %v: an acknowledged commit must be on a replica", get(c, "spec", "postgresql", "synchronous", "number"))
		}
		if got := str(get(c, "spec", "postgresql", "synchronous", "dataDurability")); got != "required" {
			t.Errorf("synchronous.dataDurability %q, want required", got)
		}
		if img := str(get(c, "spec", "imageName")); !strings.Contains(img, "postgis") {
			t.Errorf("imageName %q is not a PostGIS image", img)
		}
		var sql []string
		for _, s := range list(get(c, "spec", "bootstrap", "initdb", "postInitApplicationSQL")) {
			sql = append(sql, str(s))
		}
		if !slices.ContainsFunc(sql, func(s string) bool { return strings.Contains(s, "EXTENSION IF NOT EXISTS postgis") }) {
			t.Errorf("postInitApplicationSQL %q does not create PostGIS (the application owner cannot)", sql)
		}
	})

	t.Run("OK_NATSValues", func(t *testing.T) { checkNATSValues(t, d) })
}

// checkDeployment holds one Deployment to what a real cluster would
// refuse or what would break Tani at start.
func checkDeployment(t *testing.T, d *deployment, dep object, flags map[string]string) {
	spec := asMap(get(dep, "spec", "template", "spec"))
	podLabels := asMap(get(dep, "spec", "template", "metadata", "labels"))
	if !selects(asMap(get(dep, "spec", "selector", "matchLabels")), podLabels) {
		t.Errorf("selector %v does not match the pod labels %v", get(dep, "spec", "selector"), podLabels)
	}
	// A PodDisruptionBudget covers the pods.
	var pdbs []string
	for _, pdb := range d.ofKind("PodDisruptionBudget") {
		if selects(asMap(get(pdb, "spec", "selector", "matchLabels")), podLabels) {
			pdbs = append(pdbs, pdb.name())
		}
	}
	if len(pdbs) != 1 {
		t.Errorf("covered by PodDisruptionBudgets %v, want exactly one", pdbs)
	}

	volumes := map[string]any{}
	for _, v := range list(spec["volumes"]) {
		volumes[str(get(v, "name"))] = v
		if s := str(get(v, "secret", "secretName")); s != "" && d.secrets[s] == nil {
			t.Errorf("volume %s: Secret %q does not exist", str(get(v, "name")), s)
		}
		if c := str(get(v, "persistentVolumeClaim", "claimName")); c != "" && !d.pvcs[c] {
			t.Errorf("volume %s: PersistentVolumeClaim %q does not exist", str(get(v, "name")), c)
		}
	}

	containers := list(spec["containers"])
	if len(containers) == 0 {
		t.Fatal("no containers")
	}
	for _, c := range containers {
		name := str(get(c, "name"))
		if str(get(c, "readinessProbe", "httpGet", "path")) != "/readyz" {
			t.Errorf("container %s: readinessProbe %v, want GET /readyz", name, get(c, "readinessProbe"))
		}
		if get(c, "livenessProbe", "httpGet", "path") == nil {
			t.Errorf("container %s: no HTTP livenessProbe", name)
		}
		for _, r := range []string{"cpu", "memory"} {
			if get(c, "resources", "limits", r) == nil || get(c, "resources", "requests", r) == nil {
				t.Errorf("container %s: no %s request and limit", name, r)
			}
		}
		if get(c, "securityContext", "allowPrivilegeEscalation") != false || get(c, "securityContext", "readOnlyRootFilesystem") != true {
			t.Errorf("container %s: securityContext %v, want no privilege escalation and a read-only root", name, get(c, "securityContext"))
		}

		// The target names real modules.
		var modules []string
		for _, a := range list(get(c, "args")) {
			if v, ok := strings.CutPrefix(str(a), "-target="); ok {
				modules = strings.Split(v, ",")
			}
		}
		if len(modules) == 0 {
			t.Errorf("container %s: no -target", name)
		}
		for _, m := range modules {
			if !slices.Contains(app.ModuleNames(), m) {
				t.Errorf("container %s: -target names %q, not a module (%v)", name, m, app.ModuleNames())
			}
		}

		// Every variable: a real flag, from something that exists.
		env := map[string]string{}
		for _, ef := range list(get(c, "envFrom")) {
			if cm := str(get(ef, "configMapRef", "name")); cm != "" {
				if d.configMaps[cm] == nil {
					t.Errorf("container %s: envFrom ConfigMap %q does not exist", name, cm)
				}
				for key := range d.configMaps[cm] {
					env[key] = configValue(d, cm, key)
				}
			}
			if s := str(get(ef, "secretRef", "name")); s != "" && d.secrets[s] == nil {
				t.Errorf("container %s: envFrom Secret %q does not exist", name, s)
			}
		}
		defined := map[string]bool{}
		for _, e := range list(get(c, "env")) {
			ename, value := str(get(e, "name")), str(get(e, "value"))
			if strings.HasPrefix(ename, "TANI_") {
				if _, ok := flags[ename]; !ok {
					t.Errorf("container %s: %s is no flag of `tani up`", name, ename)
				}
			}
			for _, ref := range regexp.MustCompile(`\$\(([A-Z0-9_]+)\)`).FindAllStringSubmatch(value, -1) {
				if !defined[ref[1]] {
					t.Errorf("container %s: %s uses $(%s) before it is defined", name, ename, ref[1])
				}
			}
			if sk := get(e, "valueFrom", "secretKeyRef"); sk != nil {
				s, key := str(get(sk, "name")), str(get(sk, "key"))
				if !d.secrets[s][key] {
					t.Errorf("container %s: %s from Secret %q key %q, which does not exist", name, ename, s, key)
				}
			}
			if ck := get(e, "valueFrom", "configMapKeyRef"); ck != nil {
				cm, key := str(get(ck, "name")), str(get(ck, "key"))
				if !d.configMaps[cm][key] {
					t.Errorf("container %s: %s from ConfigMap %q key %q, which does not exist", name, ename, cm, key)
				}
			}
			defined[ename] = true
			env[ename] = value
		}
		for _, v := range []string{"TANI_DATABASE_URL", "TANI_NATS_URL", "TANI_PII_KEY_FILE", "TANI_AUTH_SIGNING_KEY_FILE", "TANI_LEDGER_KEY_FILE", "TANI_AUTH_OPERATOR_TOKEN_FILE"} {
			if env[v] == "" {
				t.Errorf("container %s: %s not set; a split process needs it", name, v)
			}
		}

		// Every file a module reads is mounted from a Secret key.
		mounts := map[string]string{} // mount path → volume
		for _, m := range list(get(c, "volumeMounts")) {
			vol := str(get(m, "name"))
			if volumes[vol] == nil {
				t.Errorf("container %s: mounts volume %q, which the pod does not define", name, vol)
			}
			mounts[str(get(m, "mountPath"))] = vol
		}
		anchors := slices.Contains(modules, app.Anchor)
		for ename, path := range env {
			if !strings.HasPrefix(path, "/etc/tani/") {
				continue
			}
			if strings.HasPrefix(ename, "TANI_FABRIC_") && !anchors {
				continue // read only by the anchor module
			}
			dir, file := filepath.Split(path)
			vol, ok := mounts[strings.TrimSuffix(dir, "/")]
			if !ok {
				t.Errorf("container %s: %s=%s, but nothing is mounted at %s", name, ename, path, dir)
				continue
			}
			if s := str(get(volumes[vol], "secret", "secretName")); s == "" || !d.secrets[s][file] {
				t.Errorf("container %s: %s=%s, but the volume %s holds no key %q", name, ename, path, vol, file)
			}
		}
	}

	// Modules that must run once are single-replica and never overlap in
	// a rollout.
	single := false
	for _, c := range containers {
		for _, a := range list(get(c, "args")) {
			single = single || str(a) == "-target=attest" || str(a) == "-target=anchor"
		}
	}
	if single {
		if r, _ := get(dep, "spec", "replicas").(int); r != 1 {
			t.Errorf("replicas %v, want 1", get(dep, "spec", "replicas"))
		}
		if s := str(get(dep, "spec", "strategy", "type")); s != "Recreate" {
			t.Errorf("strategy %q, want Recreate (the old pod stops before the new one starts)", s)
		}
	} else if r, _ := get(dep, "spec", "replicas").(int); r < 2 {
		t.Errorf("replicas %v: losing one pod would stop the service", get(dep, "spec", "replicas"))
	}
}

func configValue(d *deployment, cm, key string) string {
	for _, o := range d.ofKind("ConfigMap") {
		if o.name() == cm {
			return fmt.Sprint(get(o, "data", key))
		}
	}
	return ""
}

// selects reports whether every label of sel is in labels.
func selects(sel, labels map[string]any) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func hasPort(dep object, name string) bool {
	for _, c := range list(get(dep, "spec", "template", "spec", "containers")) {
		for _, p := range list(get(c, "ports")) {
			if str(get(p, "name")) == name {
				return true
			}
		}
	}
	return false
}

// checkNATSValues holds the Helm values to the three-node JetStream
// cluster the manifests expect.
func checkNATSValues(t *testing.T, d *deployment) {
	raw, err := os.ReadFile(filepath.Join(k8sDir, "nats-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatalf("nats-values.yaml: %v", err)
	}
	nodes, _ := get(v, "config", "cluster", "replicas").(int)
	if get(v, "config", "cluster", "enabled") != true || nodes < 3 {
		t.Errorf("cluster %v, want enabled with 3 nodes", get(v, "config", "cluster"))
	}
	if get(v, "config", "jetstream", "enabled") != true || get(v, "config", "jetstream", "fileStore", "pvc", "size") == nil {
		t.Errorf("jetstream %v, want enabled on persistent volumes", get(v, "config", "jetstream"))
	}
	if get(v, "config", "jetstream", "merge", "cipher") == nil {
		t.Error("the JetStream store is not encrypted; streams carry national IDs and phones")
	}
	replicas, err := strconv.Atoi(configValue(d, "tani-config", "TANI_NATS_REPLICAS"))
	if err != nil || replicas < 3 || replicas > nodes {
		t.Errorf("TANI_NATS_REPLICAS %q with %d nodes, want 3 and no more than the nodes", configValue(d, "tani-config", "TANI_NATS_REPLICAS"), nodes)
	}
	for name, e := range asMap(get(v, "container", "env")) {
		sk := get(e, "valueFrom", "secretKeyRef")
		if sk == nil {
			continue
		}
		s, key := str(get(sk, "name")), str(get(sk, "key"))
		if !d.secrets[s][key] {
			t.Errorf("NATS env %s from Secret %q key %q, which the kustomization does not create", name, s, key)
		}
		if d.hashedSecrets[s] {
			t.Errorf("NATS env %s names Secret %q, which kustomize renames with a hash the chart does not know", name, s)
		}
	}
}

// TestKubernetes_Renders runs `kubectl kustomize` (when kubectl is
// installed) on a copy of the directory with placeholder secret files,
// and checks that every Secret a pod references exists in the rendered
// set under its hashed name.
func TestKubernetes_Renders(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed; TestKubernetes_Manifests checks the sources")
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(k8sDir)); err != nil {
		t.Fatal(err)
	}
	_, k := loadDeployment(t)
	for _, g := range k.SecretGenerator {
		for _, f := range g.Files {
			_, path, ok := strings.Cut(f, "=")
			if !ok {
				path = f
			}
			if err := os.WriteFile(filepath.Join(dir, path), []byte("placeholder\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, stderr.String())
	}
	objects := decodeAll(t, "rendered", &stdout)
	secrets := map[string]bool{"tani-db-app": true} // created by CloudNativePG
	for _, o := range objects {
		if o.kind() == "Secret" {
			secrets[o.name()] = true
		}
		if ns := str(get(o, "metadata", "namespace")); o.kind() != "Namespace" && ns != "tani" {
			t.Errorf("%s in namespace %q, want tani", o.id(), ns)
		}
	}
	var referenced []string
	for _, o := range objects {
		if o.kind() != "Deployment" {
			continue
		}
		for _, v := range list(get(o, "spec", "template", "spec", "volumes")) {
			if s := str(get(v, "secret", "secretName")); s != "" {
				referenced = append(referenced, s)
			}
		}
		for _, c := range list(get(o, "spec", "template", "spec", "containers")) {
			for _, e := range list(get(c, "env")) {
				if s := str(get(e, "valueFrom", "secretKeyRef", "name")); s != "" {
					referenced = append(referenced, s)
				}
			}
			if img := str(get(c, "image")); !strings.Contains(img, "/") || !strings.Contains(img, ":") {
				t.Errorf("%s: image %q is not a pinned registry image", o.id(), img)
			}
		}
	}
	sort.Strings(referenced)
	for _, s := range slices.Compact(referenced) {
		if !secrets[s] {
			t.Errorf("rendered pods reference Secret %q, which the rendered set lacks (have %v)", s, secrets)
		}
	}
}
