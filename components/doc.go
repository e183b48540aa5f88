// Package components lists the standard components hosted by the tinymod
// binary; each lives in a package of its own and uses only the SDK.
package components

import (
	"github.com/tinymod/tinymod/components/collect"
	"github.com/tinymod/tinymod/components/cron"
	"github.com/tinymod/tinymod/components/debug"
	"github.com/tinymod/tinymod/components/delay"
	"github.com/tinymod/tinymod/components/httprequest"
	"github.com/tinymod/tinymod/components/httpserver"
	"github.com/tinymod/tinymod/components/inject"
	"github.com/tinymod/tinymod/components/kv"
	"github.com/tinymod/tinymod/components/router"
	"github.com/tinymod/tinymod/components/signal"
	"github.com/tinymod/tinymod/components/split"
	"github.com/tinymod/tinymod/components/ticker"
	"github.com/tinymod/tinymod/components/transform"
	"github.com/tinymod/tinymod/module"
)

// Standard returns one of each standard component.
func Standard() []module.Component {
	return []module.Component{
		&collect.Component{}, &cron.Component{}, &debug.Component{}, &delay.Component{}, &httprequest.Component{},
		httpserver.New(), &inject.Component{}, &kv.Component{}, &router.Component{}, &signal.Component{},
		&split.Component{}, &ticker.Component{}, &transform.Component{},
	}
}
