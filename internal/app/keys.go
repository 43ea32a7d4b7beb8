package app

import (
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/tani-platform/tani/internal/auth"
	"github.com/tani-platform/tani/internal/pii"
)

// keys are secrets several modules use, loaded (or generated into the data
// directory) once, by the first module that needs them.
type keys struct {
	authOnce sync.Once
	auth     *auth.Keys
	authErr  error

	piiOnce sync.Once
	pii     *pii.Keys
	piiErr  error

	adminOnce sync.Once
	admin     *echo.Group
}

func (a *App) authKeys() (*auth.Keys, error) {
	a.keys.authOnce.Do(func() { a.keys.auth, a.keys.authErr = auth.Load(a.cfg.Auth, a.cfg.DataDir) })
	return a.keys.auth, a.keys.authErr
}

func (a *App) piiKeys() (*pii.Keys, error) {
	a.keys.piiOnce.Do(func() { a.keys.pii, a.keys.piiErr = pii.Load(a.cfg.PII, a.cfg.DataDir) })
	return a.keys.pii, a.keys.piiErr
}

// adminGroup is /admin/v1, guarded by the operator token, shared by the
// modules that offer administration.
func (a *App) adminGroup() (*echo.Group, error) {
	k, err := a.authKeys()
	if err != nil {
		return nil, err
	}
	a.keys.adminOnce.Do(func() { a.keys.admin = a.server.Echo.Group("/admin/v1", k.RequireOperator()) })
	return a.keys.admin, nil
}
