package schema_test

import (
	"fmt"

	"github.com/tinymod/tinymod/internal/schema"
)

// Control is a port type written the TinySystems SDK's way.
type Control struct {
	Status string `json:"status" title:"Status" readonly:"true"`
	Start  bool   `json:"start" format:"button" title:"Start" required:"true"`
}

func ExampleFor() {
	raw, _ := schema.For(Control{Status: "stopped"})
	fmt.Println(string(raw))
	// Output:
	// {"default":{"status":"stopped","start":false},"required":["start"],"properties":{"start":{"title":"Start","type":"boolean","format":"button","propertyOrder":2},"status":{"title":"Status","type":"string","propertyOrder":1,"readonly":true}},"type":"object"}
}
