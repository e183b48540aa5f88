// Command sdkmodule is a module binary whose components are written in the
// TinySystems SDK's style and registered through compat/tinysystems: the
// compat end-to-end test runs it on several replicas. Each component logs
// what it sees as a JSON line ("sdk event"), with the replica's identity.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tinymod/tinymod/cli"
	"github.com/tinymod/tinymod/test/e2e/compat/sdkstyle"
)

var version = "compat"

func main() {
	identity := flagValue(os.Args, "--identity")
	var mu sync.Mutex
	sdkstyle.Observer = func(node, event string, details map[string]any) {
		line, _ := json.Marshal(map[string]any{"time": time.Now(), "msg": "sdk event", "identity": identity,
			"node": node, "event": event, "data": details})
		mu.Lock()
		fmt.Fprintln(os.Stderr, string(line))
		mu.Unlock()
	}
	sdkstyle.Register(identity)
	if err := cli.NewRootCommand("sdkmodule", version).Execute(); err != nil {
		os.Exit(1)
	}
}

// flagValue returns the value of a --name value or --name=value argument.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}
