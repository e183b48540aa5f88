package schema

import (
	"encoding/json"
	"testing"
)

type benchSDK struct {
	Context any    `json:"context" required:"true" configurable:"true" title:"Context" description:"Arbitrary message"`
	Delay   int    `json:"delay" required:"true" title:"Delay (ms)" minimum:"0" default:"1000"`
	Status  string `json:"status" readonly:"true" title:"Status"`
}

type benchNative struct {
	Context any    `json:"context" jsonschema:"title=Context"`
	Delay   int    `json:"delay" jsonschema:"title=Delay,minimum=0"`
	Status  string `json:"status"`
}

// BenchmarkDescribe compares describing a port's type once more (reflect,
// what every read of a component's ports cost before descriptions were kept)
// with the kept description (cached), for a type in the SDK's style and a
// native one.
func BenchmarkDescribe(b *testing.B) {
	for _, tc := range []struct {
		name string
		v    any
	}{{"sdk", benchSDK{Delay: 1000}}, {"native", benchNative{Delay: 1000}}} {
		def, _ := json.Marshal(tc.v)
		b.Run(tc.name+"/reflect", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := describe(tc.v, def); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/cached", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Describe(tc.v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
