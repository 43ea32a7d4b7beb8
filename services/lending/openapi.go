package lending

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPI is the hand-written OpenAPI 3 document of the banks' API
// (/bank/v1). A test holds it to every route mounted under /bank/v1 —
// lending's and any other module's — both ways.
//
//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the document.
func OpenAPI() []byte { return openAPI }

func (s *Service) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openAPI)
}
