package webhooks

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/events"
	"github.com/tani-platform/tani/internal/identity"
)

// OpenAPI is the webhooks part of an organization API's OpenAPI
// document: the paths under prefix (/bank/v1 or /distributor/v1), the
// component schemas they use (all named Webhook…), and the event
// catalogue for organizations of kind k as an OpenAPI 3.1 webhooks
// section (one entry per event type, its request body the delivered
// payload). TestOpenAPI holds it to the routes and the catalogue.
type OpenAPI struct {
	Paths    map[string]any
	Schemas  map[string]any
	Webhooks map[string]any
}

// Document is the fragment as a whole OpenAPI 3.1 document, served at
// <prefix>/webhooks/openapi.json.
func Document(prefix string, k identity.Kind) map[string]any {
	f := Fragment(prefix, k)
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{
			"title":   "Tani webhooks and events (" + string(k) + "s)",
			"version": "1.0.0",
			"description": "Endpoints your organization registers to be told of events, as Standard Webhooks (https://www.standardwebhooks.com): " +
				"headers webhook-id (the event id, the same on every retry), webhook-timestamp and webhook-signature (v1,<base64 HMAC-SHA256 over id.timestamp.body, " +
				"keyed with the base64-decoded part of your whsec_ secret after the prefix>; space-separated, one per secret during a rotation); body {type, timestamp, data}. " +
				"Deliveries are retried with exponential backoff for 72 hours; per-endpoint ordering is not promised: order by the data's own times and de-duplicate by webhook-id. " +
				"The same events can be polled (GET " + prefix + "/events). Every error answer has the shape {\"error\":{\"code\",\"message\",\"fields\"}}.",
		},
		"servers":    []any{map[string]any{"url": "/"}},
		"security":   []any{map[string]any{"apiKey": []any{}}},
		"paths":      f.Paths,
		"webhooks":   f.Webhooks,
		"components": map[string]any{"schemas": f.Schemas, "securitySchemes": map[string]any{"apiKey": map[string]any{"type": "http", "scheme": "bearer", "description": "tani_<key id>_<secret>"}}},
	}
}

// MergeOpenAPI adds the fragment to an existing OpenAPI document (JSON):
// its paths, its schemas under components.schemas, and the event
// catalogue as the webhooks section (OpenAPI 3.1) or x-webhooks (3.0,
// which has no webhooks section). A path, schema or webhook the document
// already has is an error, never overwritten.
func MergeOpenAPI(doc []byte, prefix string, k identity.Kind) ([]byte, error) {
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	f := Fragment(prefix, k)
	version, _ := d["openapi"].(string)
	hooksKey := "webhooks"
	if strings.HasPrefix(version, "3.0") {
		hooksKey = "x-webhooks"
	}
	add := func(section map[string]any, key string, what map[string]any) error {
		into, _ := section[key].(map[string]any)
		if into == nil {
			into = map[string]any{}
			section[key] = into
		}
		for name, v := range what {
			if _, ok := into[name]; ok {
				return fmt.Errorf("openapi document already has %s %q", key, name)
			}
			into[name] = v
		}
		return nil
	}
	if err := add(d, "paths", f.Paths); err != nil {
		return nil, err
	}
	components, _ := d["components"].(map[string]any)
	if components == nil {
		components = map[string]any{}
		d["components"] = components
	}
	if err := add(components, "schemas", f.Schemas); err != nil {
		return nil, err
	}
	if err := add(d, hooksKey, f.Webhooks); err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func jsonBody(schema any) map[string]any {
	return map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": schema}}}
}

func answer(desc string, schema any) map[string]any {
	a := jsonBody(schema)
	a["description"] = desc
	return a
}

var errorAnswer = func(desc string) map[string]any { return answer(desc, ref("WebhookError")) }

func param(name, in, desc string, schema map[string]any, required bool) map[string]any {
	return map[string]any{"name": name, "in": in, "description": desc, "required": required, "schema": schema}
}

var (
	str     = map[string]any{"type": "string"}
	uuidStr = map[string]any{"type": "string", "format": "uuid"}
	when    = map[string]any{"type": "string", "format": "date-time"}
	// The documents are OpenAPI 3.0: null is "nullable", not a type
	// (kin-openapi refuses type arrays before 3.1).
	whenNil = map[string]any{"type": "string", "nullable": true, "format": "date-time"}
	intNil  = map[string]any{"type": "integer", "nullable": true}
	strNil  = map[string]any{"type": "string", "nullable": true}
	boolean = map[string]any{"type": "boolean"}
	integer = map[string]any{"type": "integer"}
)

func obj(required []string, props map[string]any) map[string]any {
	o := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

// Fragment builds the webhooks part of the API of organizations of kind
// k under prefix.
func Fragment(prefix string, k identity.Kind) OpenAPI {
	var types []any
	for _, t := range events.TypesFor(k) {
		types = append(types, string(t))
	}
	typeEnum := map[string]any{"type": "string", "enum": types}
	id := param("id", "path", "the endpoint's id", uuidStr, true)
	common := map[string]any{"400": errorAnswer("Bad input: nothing was stored"), "401": errorAnswer("No valid API key"), "403": errorAnswer("Not this kind of organization")}
	with := func(m map[string]any) map[string]any {
		out := maps.Clone(common)
		maps.Copy(out, m)
		return out
	}
	schemas := map[string]any{
		"WebhookError": obj([]string{"error"}, map[string]any{"error": obj([]string{"code", "message"}, map[string]any{
			"code": str, "message": str, "fields": map[string]any{"type": "array", "items": obj([]string{"field", "message"}, map[string]any{"field": str, "message": str})},
		})}),
		"WebhookEndpoint": obj([]string{"id", "url", "event_types", "enabled"}, map[string]any{
			"id": uuidStr, "url": str, "description": str,
			"event_types":                map[string]any{"type": "array", "items": typeEnum},
			"enabled":                    boolean,
			"disabled_reason":            map[string]any{"type": "string", "nullable": true, "enum": []any{"organization", "failing", nil}, "description": "failing: every attempt failed for the whole retry window; re-enable, then replay"},
			"disabled_at":                whenNil,
			"failing_since":              whenNil,
			"last_success_at":            whenNil,
			"last_failure_at":            whenNil,
			"previous_secret_expires_at": map[string]any{"type": "string", "nullable": true, "format": "date-time", "description": "until then deliveries carry the rotated-out secret's signature too"},
			"created_at":                 when, "updated_at": when,
			"pending_deliveries": integer,
			"secret":             map[string]any{"type": "string", "description": "whsec_ and the base64 of the key: only in the answer that created it (POST, rotate-secret)"},
		}),
		"WebhookEndpointCreate": obj([]string{"url", "event_types"}, map[string]any{
			"url":         map[string]any{"type": "string", "maxLength": MaxURL, "description": "https; never a loopback, private, link-local or multicast address, nor a name resolving to one"},
			"event_types": map[string]any{"type": "array", "minItems": 1, "items": typeEnum},
			"description": map[string]any{"type": "string", "maxLength": MaxDescription},
			"enabled":     boolean,
		}),
		"WebhookEndpointUpdate": obj(nil, map[string]any{
			"url":         map[string]any{"type": "string", "maxLength": MaxURL},
			"event_types": map[string]any{"type": "array", "minItems": 1, "items": typeEnum},
			"description": map[string]any{"type": "string", "maxLength": MaxDescription},
			"enabled":     boolean,
		}),
		"WebhookRotate": obj(nil, map[string]any{"overlap_seconds": map[string]any{"type": "integer", "minimum": 0, "maximum": int64(MaxOverlap.Seconds()), "default": 86400}}),
		"WebhookDelivery": obj([]string{"id", "event_id", "event_type", "state", "attempts"}, map[string]any{
			"id": integer, "event_id": map[string]any{"type": "string", "format": "uuid", "description": "the webhook-id of every attempt"},
			"event_type": typeEnum,
			"state":      map[string]any{"type": "string", "enum": []any{"pending", "delivered", "failed", "withheld"}, "description": "withheld: not sent, the farmer's consent it needed is no longer live"},
			"attempts":   integer, "response_status": intNil, "latency_ms": intNil, "last_error": strNil,
			"created_at": when, "first_attempt_at": whenNil, "last_attempt_at": whenNil, "next_attempt_at": whenNil, "delivered_at": whenNil,
			"replays":     integer,
			"attempt_log": map[string]any{"type": "array", "items": ref("WebhookAttempt")},
		}),
		"WebhookAttempt":   obj([]string{"n", "at", "latency_ms"}, map[string]any{"n": integer, "at": when, "response_status": intNil, "error": strNil, "latency_ms": integer}),
		"WebhookEventType": obj([]string{"type", "summary"}, map[string]any{"type": typeEnum, "summary": str}),
		"WebhookPolledEvent": obj([]string{"id", "type", "timestamp", "data"}, map[string]any{
			"id":   map[string]any{"type": "string", "format": "uuid", "description": "the webhook-id its deliveries carry"},
			"type": typeEnum, "timestamp": when, "data": map[string]any{"type": "object"},
		}),
	}
	webhooks := map[string]any{}
	for _, info := range events.Catalogue {
		if !info.For(k) {
			continue
		}
		name := "WebhookPayload_" + strings.NewReplacer(".", "_").Replace(string(info.Type))
		schemas[name] = obj([]string{"type", "timestamp", "data"}, map[string]any{
			"type": map[string]any{"type": "string", "enum": []any{string(info.Type)}}, "timestamp": when, "data": info.Data,
		})
		webhooks[string(info.Type)] = map[string]any{"post": map[string]any{
			"summary":     info.Summary,
			"operationId": "webhook_" + strings.NewReplacer(".", "_").Replace(string(info.Type)),
			"parameters": []any{
				param("webhook-id", "header", "the event id: the same on every retry and replay; de-duplicate by it", uuidStr, true),
				param("webhook-timestamp", "header", "seconds since the epoch, when this attempt was signed", str, true),
				param("webhook-signature", "header", "v1,<base64 HMAC-SHA256 of id.timestamp.body>, space-separated during a secret rotation", str, true),
			},
			"requestBody": map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": ref(name)}}},
			"responses": map[string]any{
				"2XX":     map[string]any{"description": "Delivered"},
				"default": map[string]any{"description": "Any other answer, or none within the timeout, is retried"},
			},
		}}
	}
	p := prefix + "/webhooks"
	paths := map[string]any{
		p + "/event-types": map[string]any{"get": map[string]any{
			"summary": "The event types your organization may subscribe to", "operationId": "listWebhookEventTypes",
			"responses": with(map[string]any{"200": answer("The catalogue", obj([]string{"event_types"}, map[string]any{"event_types": map[string]any{"type": "array", "items": ref("WebhookEventType")}}))}),
		}},
		p: map[string]any{
			"get": map[string]any{"summary": "List your endpoints", "operationId": "listWebhooks",
				"responses": with(map[string]any{"200": answer("Endpoints", obj([]string{"webhooks"}, map[string]any{"webhooks": map[string]any{"type": "array", "items": ref("WebhookEndpoint")}}))})},
			"post": map[string]any{"summary": "Register an endpoint; the answer holds its secret, shown once", "operationId": "createWebhook",
				"requestBody": mapWith(jsonBody(ref("WebhookEndpointCreate")), "required", true),
				"responses":   with(map[string]any{"201": answer("Created, with its secret", ref("WebhookEndpoint")), "409": errorAnswer("Too many endpoints")})},
		},
		p + "/{id}": map[string]any{
			"parameters": []any{id},
			"get":        map[string]any{"summary": "One endpoint", "operationId": "getWebhook", "responses": with(map[string]any{"200": answer("The endpoint", ref("WebhookEndpoint")), "404": errorAnswer("Not yours, or no such endpoint")})},
			"patch": map[string]any{"summary": "Change an endpoint; enabling one disabled for failing clears the failure", "operationId": "updateWebhook",
				"requestBody": mapWith(jsonBody(ref("WebhookEndpointUpdate")), "required", true),
				"responses":   with(map[string]any{"200": answer("The endpoint", ref("WebhookEndpoint")), "404": errorAnswer("Not yours, or no such endpoint")})},
			"delete": map[string]any{"summary": "Delete an endpoint and its deliveries", "operationId": "deleteWebhook",
				"responses": with(map[string]any{"204": map[string]any{"description": "Deleted"}, "404": errorAnswer("Not yours, or no such endpoint")})},
		},
		p + "/{id}/rotate-secret": map[string]any{"post": map[string]any{
			"summary": "New secret, shown once; the old one keeps signing beside it for the overlap", "operationId": "rotateWebhookSecret",
			"parameters": []any{id}, "requestBody": jsonBody(ref("WebhookRotate")),
			"responses": with(map[string]any{"200": answer("The endpoint with its new secret", ref("WebhookEndpoint")), "404": errorAnswer("Not yours, or no such endpoint")}),
		}},
		p + "/{id}/deliveries": map[string]any{"get": map[string]any{
			"summary": "Deliveries to an endpoint, newest first", "operationId": "listWebhookDeliveries",
			"parameters": []any{id,
				param("state", "query", "only deliveries in this state", map[string]any{"type": "string", "enum": []any{"pending", "delivered", "failed", "withheld"}}, false),
				param("event_type", "query", "only this event type", typeEnum, false),
				param("before", "query", "a delivery id: the page before it (next_before)", integer, false),
				param("limit", "query", "1 to 500, default 50", integer, false)},
			"responses": with(map[string]any{"200": answer("Deliveries", obj([]string{"deliveries"}, map[string]any{"deliveries": map[string]any{"type": "array", "items": ref("WebhookDelivery")}, "next_before": integer})),
				"404": errorAnswer("Not yours, or no such endpoint")}),
		}},
		p + "/{id}/deliveries/{delivery}": map[string]any{"get": map[string]any{
			"summary": "One delivery with every attempt", "operationId": "getWebhookDelivery",
			"parameters": []any{id, param("delivery", "path", "the delivery's id", integer, true)},
			"responses":  with(map[string]any{"200": answer("The delivery", ref("WebhookDelivery")), "404": errorAnswer("Not yours, or no such delivery")}),
		}},
		p + "/{id}/replay": map[string]any{"post": map[string]any{
			"summary":     "Send again every event since a time (within the retention), with its original webhook-id and body",
			"operationId": "replayWebhook",
			"parameters":  []any{id, param("since", "query", "RFC 3339; not in the future, not beyond the retention (30 days by default)", when, true)},
			"responses": with(map[string]any{"202": answer("Scheduled", obj([]string{"replayed", "since"}, map[string]any{"replayed": integer, "since": when})),
				"404": errorAnswer("Not yours, or no such endpoint"), "409": errorAnswer("The endpoint is disabled")}),
		}},
		prefix + "/events": map[string]any{"get": map[string]any{
			"summary":     "Poll the events your organization would have been pushed, in publication order",
			"operationId": "pollEvents",
			"parameters": []any{param("cursor", "query", "next_cursor of the previous page; none: from the start of the retention", str, false),
				param("limit", "query", "1 to 1000, default 100", integer, false),
				param("types", "query", "comma-separated event types", str, false)},
			"responses": with(map[string]any{"200": answer("A page", obj([]string{"events", "next_cursor", "has_more"}, map[string]any{
				"events": map[string]any{"type": "array", "items": ref("WebhookPolledEvent")}, "next_cursor": str, "has_more": boolean}))}),
		}},
		p + "/openapi.json": map[string]any{"get": map[string]any{
			"summary": "This document", "operationId": "webhooksOpenAPI",
			"responses": with(map[string]any{"200": map[string]any{"description": "OpenAPI 3.1", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}}),
		}},
	}
	return OpenAPI{Paths: paths, Schemas: schemas, Webhooks: webhooks}
}

func mapWith(m map[string]any, k string, v any) map[string]any {
	m[k] = v
	return m
}

// openapi serves Document for the caller's kind of organization.
func (s *Service) openapi(prefix string, k identity.Kind) echo.HandlerFunc {
	doc, err := json.Marshal(Document(prefix, k))
	return func(c echo.Context) error {
		if err != nil {
			return fmt.Errorf("webhooks openapi: %w", err)
		}
		return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, doc)
	}
}
