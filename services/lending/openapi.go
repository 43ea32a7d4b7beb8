package lending

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPI is the hand-written OpenAPI 3 document of the banks' API
// (/bank/v1). The document served (Deps.Document) is it with the other
// modules' parts merged in; a test holds that to every route mounted under
// /bank/v1, both ways.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the document.
func OpenAPI() []byte { return openAPI }

func (s *Service) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", s.document)
}
