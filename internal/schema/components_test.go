package schema

import (
	"strconv"
	"strings"
	"testing"
)

// Port types modelled on the TinySystems common module's thirteen
// components, written the SDK's way, with what each must keep on tinymod.

type anyContext any

type arraygetRequest struct {
	Context anyContext `json:"context,omitempty" configurable:"true" title:"Context" description:"Passed through"`
	Array   []any      `json:"array" required:"true" configurable:"true" title:"Array" description:"Array to read"`
	Index   int        `json:"index" required:"true" title:"Index" description:"1-based item number"`
}

type asyncRequest struct {
	Context anyContext `json:"context" configurable:"true" required:"true" title:"Context" description:"Message to run with"`
}

type cronControl struct {
	Context  anyContext `json:"context" required:"true" title:"Context" readonly:"true"`
	Schedule string     `json:"schedule" title:"Schedule" readonly:"true"`
	Status   string     `json:"status" title:"Status" readonly:"true"`
	Start    bool       `json:"start" format:"button" title:"Start" required:"true"`
}

type debugInput struct {
	Context anyContext `json:"context" configurable:"true" required:"true" title:"Context" description:"Message to show"`
}

type delaySettings struct {
	Context anyContext `json:"context" configurable:"true" title:"Context" description:"Message to delay"`
	Delay   int        `json:"delay" required:"true" title:"Delay (ms)"`
}

type groupbyRequest struct {
	Context anyContext `json:"context" configurable:"true" title:"Context" description:"Passed through"`
	Items   []any      `json:"items" required:"true" configurable:"true" title:"Items" description:"Items to group"`
	Path    string     `json:"groupByPath" required:"true" configurable:"true" title:"Group By Path" description:"Path of the key"`
}

type injectSettings struct {
	ConfigRequired bool `json:"configRequired" title:"Config Required" description:"Reject messages before the config is set"`
	Data           any  `json:"data" configurable:"true" required:"true" title:"Data" description:"Data to inject"`
}

type kvSettings struct {
	Document   record `json:"document,omitempty" type:"object" required:"true" title:"Document" description:"Stored documents' shape" configurable:"true"`
	PrimaryKey string `json:"primaryKey" title:"Primary Key" required:"true" default:"id"`
	MaxRecords int    `json:"maxRecords" title:"Max Records" description:"At most this many records" default:"100"`
}

type modifyRequest struct {
	Context anyContext `json:"context" configurable:"true" required:"true" title:"Context" description:"Message to modify"`
}

type routerRequest struct {
	Context    anyContext  `json:"context" configurable:"true" required:"true" title:"Context" description:"Message to route"`
	Conditions []condition `json:"conditions" required:"true" title:"Conditions" minItems:"1" uniqueItems:"true"`
}

type signalControl struct {
	Context anyContext `json:"context" required:"true" title:"Context" readonly:"true"`
	Send    bool       `json:"send" format:"button" title:"Send" required:"true"`
}

type splitRequest struct {
	Context anyContext `json:"context" title:"Context" configurable:"true" description:"Sent along with each item"`
	Array   []any      `json:"array" title:"Array" description:"Items to split" required:"true" shared:"true"`
}

type tickerControl struct {
	Status string `json:"status" title:"Status" readonly:"true"`
	Stop   bool   `json:"stop" format:"button" title:"Stop" required:"true"`
}

func TestSchemaCommonModuleComponents(t *testing.T) {
	for _, tc := range []struct {
		component string
		port      any
		// path=value checks on the schema; a value "required:x" checks that
		// the required list at path names x.
		want []string
	}{
		{"arrayget", arraygetRequest{Index: 1}, []string{"properties/context/title=Context", "properties/array/description=Array to read", "properties/array/configurable=true", "=required:array", "=required:index"}},
		{"async", asyncRequest{}, []string{"properties/context/title=Context", "properties/context/description=Message to run with", "=required:context"}},
		{"cron", cronControl{Schedule: "* * * * *"}, []string{"properties/start/format=button", "properties/start/title=Start", "properties/status/readonly=true", "properties/schedule/readonly=true", "=required:start", "=required:context"}},
		{"debug", debugInput{}, []string{"properties/context/title=Context", "properties/context/configurable=true", "=required:context"}},
		{"delay", delaySettings{Delay: 1000}, []string{"properties/delay/title=Delay (ms)", "properties/context/description=Message to delay", "=required:delay"}},
		{"groupby", groupbyRequest{}, []string{"properties/groupByPath/title=Group By Path", "properties/items/description=Items to group", "=required:items", "=required:groupByPath"}},
		{"inject", injectSettings{}, []string{"properties/configRequired/title=Config Required", "properties/data/description=Data to inject", "=required:data"}},
		{"kv", kvSettings{PrimaryKey: "id", MaxRecords: 100}, []string{"properties/document/title=Document", "properties/document/properties/id/title=ID", "properties/primaryKey/default=id", "properties/maxRecords/default=100", "=required:document", "=required:primaryKey"}},
		{"modify", modifyRequest{}, []string{"properties/context/title=Context", "properties/context/description=Message to modify", "=required:context"}},
		{"router", routerRequest{Conditions: []condition{{Route: route{Value: "A", Options: []string{"A", "B"}}}}}, []string{"properties/conditions/title=Conditions", "properties/conditions/items/properties/route/title=Route", "properties/conditions/items/properties/route/enum/0=A", "=required:conditions", "properties/conditions/items=required:route"}},
		{"signal", signalControl{}, []string{"properties/send/format=button", "properties/context/readonly=true", "=required:send"}},
		{"split", splitRequest{}, []string{"properties/array/shared=true", "properties/array/description=Items to split", "=required:array"}},
		{"ticker", tickerControl{Status: "running"}, []string{"properties/stop/format=button", "properties/status/readonly=true", "properties/stop/title=Stop", "=required:stop"}},
	} {
		t.Run(tc.component, func(t *testing.T) {
			d, err := Describe(tc.port)
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Contradictions) > 0 {
				t.Errorf("default left out: %v", d.Contradictions)
			}
			s := decode(t, d.Schema)
			for _, w := range tc.want {
				path, want, _ := strings.Cut(w, "=")
				var node any = s
				if path != "" {
					node = at(s, path)
				}
				if name, ok := strings.CutPrefix(want, "required:"); ok {
					if !has(at(node, "required"), name) {
						t.Errorf("%s: required %v lacks %s", path, at(node, "required"), name)
					}
					continue
				}
				if got := fmtValue(node); got != want {
					t.Errorf("%s = %s, want %s", path, got, want)
				}
			}
			checkSelfConsistent(t, d.Schema)
		})
	}
}

func fmtValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "<absent>"
	case bool:
		if x {
			return "true"
		}
		return "false"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		return x
	}
	return "?"
}
