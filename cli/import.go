package cli

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/controller"
)

// Names the TinySystems SDK gives meaning to, and what tinymod makes of them.
const (
	// sdkNodeFinalizer is the SDK's finalizer on TinyNodes; it becomes
	// controller.NodeFinalizer.
	sdkNodeFinalizer = "io.tinysystems/node-finalizer"
	// sdkFlowDescription is the annotation on an SDK TinyFlow that holds what
	// tinymod keeps in spec.description.
	sdkFlowDescription = "tinysystems.io/flow-description"
	// sdkPrefix marks the labels and annotations the SDK gives meaning to.
	sdkPrefix = "tinysystems.io/"
	// lastApplied records the object as it was applied, in the SDK's shape.
	lastApplied = "kubectl.kubernetes.io/last-applied-configuration"
)

// NewImportCommand returns `import`: TinySystems SDK manifests converted to
// tinymod's, written to stdout as multi-document YAML.
func NewImportCommand() *cobra.Command {
	var module string
	cmd := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Convert TinySystems SDK manifests into tinymod's",
		Long: `Reads TinyNodes, TinySignals and TinyFlows written for the TinySystems SDK
(YAML or JSON, several documents or a List; "-" reads stdin) and writes them in
tinymod's form to stdout, ready for kubectl apply -f -.

Base64 configurations and signal data become JSON, edge targets and mapping
sources "node:port" become "node.port", the SDK's node finalizer becomes
tinymod's, and fields tinymod has no place for are dropped. Every object that
lost something, or was skipped, gets one line on stderr.

Exits non-zero, writing nothing to stdout, when the input is not YAML or JSON
objects with apiVersion and kind, or when nothing in it could be converted.`,
		Example: `  tinymod import flow.yaml | kubectl apply -f -
  kubectl get tinynodes,tinyflows -o yaml | tinymod import --module common - > tinymod.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if module != "" {
				if errs := validation.IsDNS1123Subdomain(module); len(errs) > 0 {
					return fmt.Errorf("--module %q: %s", module, strings.Join(errs, "; "))
				}
			}
			in := cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer func() { _ = f.Close() }()
				in = f
			}
			objs, notes, err := importManifests(in, module)
			if err != nil {
				return err
			}
			for _, n := range notes {
				fmt.Fprintln(cmd.ErrOrStderr(), n)
			}
			if len(objs) == 0 {
				return errors.New("nothing to import: no TinyNode, TinySignal or TinyFlow could be converted")
			}
			var out bytes.Buffer
			for i, obj := range objs {
				data, err := yaml.Marshal(obj.Object)
				if err != nil {
					return fmt.Errorf("write %s %s: %w", obj.GetKind(), obj.GetName(), err)
				}
				if i > 0 {
					out.WriteString("---\n")
				}
				out.Write(data)
			}
			_, err = cmd.OutOrStdout().Write(out.Bytes())
			return err
		},
	}
	cmd.Flags().StringVar(&module, "module", "", "tinymod module (its --name) for every TinyNode (default: the module named in each node's SDK name, else its spec.module without the image tag)")
	return cmd
}

// importManifests converts every object in r. It returns the converted objects
// in input order and one note per object that lost something or was skipped;
// an error only for input that is not a stream of Kubernetes objects.
func importManifests(r io.Reader, module string) ([]*unstructured.Unstructured, []string, error) {
	objs, err := readObjects(r)
	if err != nil {
		return nil, nil, err
	}
	var out []*unstructured.Unstructured
	var notes []string
	for _, in := range objs {
		c := &conversion{in: in, module: module}
		obj := c.convert()
		if obj != nil {
			out = append(out, obj)
		}
		if n := c.note(); n != "" {
			notes = append(notes, n)
		}
	}
	return out, notes, nil
}

// readObjects parses a stream of YAML or JSON documents, expanding Lists.
func readObjects(r io.Reader) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var out []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		data, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		raw, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		var obj map[string]any
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			return nil, fmt.Errorf("document %d: not an object: %w", doc, err)
		}
		if len(obj) == 0 {
			continue // empty, or comments only
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return nil, fmt.Errorf("document %d: no apiVersion and kind", doc)
		}
		if !u.IsList() {
			out = append(out, u)
			continue
		}
		items, err := listItems(u)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		out = append(out, items...)
	}
}

// listItems returns the items of a List, or of a typed list such as
// TinyNodeList whose items may leave their kind out.
func listItems(list *unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	items, _, _ := unstructured.NestedFieldNoCopy(list.Object, "items")
	slice, ok := items.([]any)
	if !ok && items != nil {
		return nil, fmt.Errorf("%s: items is not a list", list.GetKind())
	}
	itemKind := strings.TrimSuffix(list.GetKind(), "List")
	out := make([]*unstructured.Unstructured, 0, len(slice))
	for i, item := range slice {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: items[%d] is not an object", list.GetKind(), i)
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" && itemKind != "" {
			u.SetKind(itemKind)
		}
		if u.GetAPIVersion() == "" && list.GetKind() != "List" {
			u.SetAPIVersion(list.GetAPIVersion())
		}
		if u.GetAPIVersion() == "" || u.GetKind() == "" {
			return nil, fmt.Errorf("%s: items[%d]: no apiVersion and kind", list.GetKind(), i)
		}
		out = append(out, u)
	}
	return out, nil
}

// conversion turns one SDK object into tinymod's form and notes what it loses.
type conversion struct {
	in      *unstructured.Unstructured
	module  string   // --module, or empty to derive it
	skipped string   // why the object is left out, if it is
	losses  []string // "path: why", in the order found
}

func (c *conversion) drop(path, why string) {
	c.losses = append(c.losses, path+": "+why)
}

func (c *conversion) skip(why string) *unstructured.Unstructured {
	c.skipped = why
	return nil
}

// note is the object's line on stderr, or empty when nothing was lost.
func (c *conversion) note() string {
	ref := c.in.GetName()
	if ns := c.in.GetNamespace(); ns != "" {
		ref = ns + "/" + ref
	}
	if ref == "" {
		ref = "(no name)"
	}
	prefix := c.in.GetKind() + " " + ref + ": "
	switch {
	case c.skipped != "":
		return prefix + "skipped: " + c.skipped
	case len(c.losses) > 0:
		return prefix + strings.Join(c.losses, "; ")
	}
	return ""
}

func (c *conversion) convert() *unstructured.Unstructured {
	gv, err := schema.ParseGroupVersion(c.in.GetAPIVersion())
	if err != nil || gv.Group != v1alpha1.GroupVersion.Group {
		return c.skip("not a TinySystems kind")
	}
	kind := c.in.GetKind()
	switch kind {
	case "TinyNode", "TinySignal", "TinyFlow":
	case "TinyModule":
		return c.skip("a module's replicas create their TinyModule")
	default:
		return c.skip("tinymod has no " + kind)
	}
	if c.in.GetName() == "" {
		return c.skip("no metadata.name")
	}
	spec, ok := c.in.Object["spec"].(map[string]any)
	if !ok && c.in.Object["spec"] != nil {
		return c.skip("spec is not an object")
	}
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(v1alpha1.GroupVersion.String())
	out.SetKind(kind)
	out.Object["metadata"] = c.metadata()
	var outSpec map[string]any
	switch kind {
	case "TinyNode":
		outSpec = c.nodeSpec(spec)
	case "TinySignal":
		outSpec = c.signalSpec(spec)
	case "TinyFlow":
		outSpec = c.flowSpec(spec)
	}
	if c.skipped != "" {
		return nil
	}
	if len(outSpec) > 0 {
		out.Object["spec"] = outSpec
	}
	return out
}

// metadata keeps what the client set and tinymod understands. Fields the API
// server sets (uid, resourceVersion, ...) go silently.
func (c *conversion) metadata() map[string]any {
	meta, _ := c.in.Object["metadata"].(map[string]any)
	out := map[string]any{}
	for _, k := range sortedKeys(meta) {
		switch k {
		case "name", "namespace":
			out[k] = meta[k]
		case "labels":
			if labels := c.labels(c.in.GetLabels()); len(labels) > 0 {
				out[k] = labels
			}
		case "annotations":
			if annotations := c.annotations(c.in.GetAnnotations()); len(annotations) > 0 {
				out[k] = annotations
			}
		case "finalizers":
			if finalizers := c.finalizers(c.in.GetFinalizers()); len(finalizers) > 0 {
				out[k] = finalizers
			}
		case "ownerReferences":
			c.drop("metadata.ownerReferences", "an owner's uid does not survive an import")
		case "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
			"deletionGracePeriodSeconds", "managedFields", "selfLink", "generateName":
		default:
			c.drop("metadata."+k, "not imported")
		}
	}
	return out
}

// labels keeps the flow label, which tinymod reads too, and the labels the
// SDK gives no meaning to.
func (c *conversion) labels(in map[string]string) map[string]any {
	out := map[string]any{}
	for _, k := range sortedKeys(in) {
		if k != v1alpha1.FlowNameLabel && strings.HasPrefix(k, sdkPrefix) {
			c.drop("metadata.labels["+k+"]", "no meaning in tinymod")
			continue
		}
		out[k] = in[k]
	}
	return out
}

func (c *conversion) annotations(in map[string]string) map[string]any {
	out := map[string]any{}
	for _, k := range sortedKeys(in) {
		switch {
		case k == lastApplied:
		case k == sdkFlowDescription && c.in.GetKind() == "TinyFlow":
			// becomes spec.description
		case strings.HasPrefix(k, sdkPrefix):
			c.drop("metadata.annotations["+k+"]", "no meaning in tinymod")
		default:
			out[k] = in[k]
		}
	}
	return out
}

func (c *conversion) finalizers(in []string) []any {
	var out []any
	seen := map[string]bool{}
	for i, f := range in {
		if f == sdkNodeFinalizer {
			if c.in.GetKind() != "TinyNode" {
				c.drop(fmt.Sprintf("metadata.finalizers[%d]", i), "the SDK's node finalizer on a "+c.in.GetKind())
				continue
			}
			f = controller.NodeFinalizer
		}
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

func (c *conversion) nodeSpec(spec map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range sortedKeys(spec) {
		switch k {
		case "module", "component", "ports", "edges":
		default:
			c.drop("spec."+k, "tinymod has no such field")
		}
	}
	component, _ := spec["component"].(string)
	if component == "" {
		return c.skipSpec("spec.component is missing")
	}
	out["component"] = component
	module, err := c.nodeModule(spec)
	if err != nil {
		return c.skipSpec(err.Error())
	}
	out["module"] = module
	if ports := c.ports(spec["ports"]); len(ports) > 0 {
		out["ports"] = ports
	}
	if edges := c.edges(spec["edges"]); len(edges) > 0 {
		out["edges"] = edges
	}
	return out
}

func (c *conversion) skipSpec(why string) map[string]any {
	c.skip(why)
	return nil
}

// nodeModule is --module, else the module part of the SDK's node name
// (<flow hash>.<module>.<component>-<suffix>), which is the SDK module's
// --name as the SDK itself routes by, else spec.module (an image) without its
// tag, made a resource name the way the SDK makes one.
func (c *conversion) nodeModule(spec map[string]any) (string, error) {
	if c.module != "" {
		return c.module, nil
	}
	if parts := strings.Split(c.in.GetName(), "."); len(parts) >= 3 && parts[1] != "" {
		return parts[1], nil
	}
	image, _ := spec["module"].(string)
	name := image
	if i := strings.Index(name, "@"); i >= 0 {
		name = name[:i] // digest
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i] // tag
	}
	name = strings.Trim(nonAlnum.ReplaceAllString(strings.ToLower(name), "-"), "-")
	if name == "" || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return "", fmt.Errorf("spec.module: cannot tell the tinymod module from the name or from spec.module %q; pass --module", image)
	}
	c.drop("spec.module", fmt.Sprintf("%q taken as module %q; pass --module if it runs under another --name", image, name))
	return name, nil
}

var nonAlnum = regexp.MustCompile(`[^a-z0-9]+`)

func (c *conversion) ports(v any) []any {
	list, ok := v.([]any)
	if !ok {
		if v != nil {
			c.drop("spec.ports", "not a list")
		}
		return nil
	}
	var out []any
	for i, item := range list {
		path := fmt.Sprintf("spec.ports[%d]", i)
		in, ok := item.(map[string]any)
		if !ok {
			c.drop(path, "not an object")
			continue
		}
		port, _ := in["port"].(string)
		if err := checkPort(port); err != nil {
			c.drop(path, "port: "+err.Error())
			continue
		}
		pc := map[string]any{"port": port}
		if from, _ := in["from"].(string); from != "" {
			target, err := edgeTarget(from)
			if err != nil {
				c.drop(path, "from: "+err.Error())
				continue
			}
			pc["from"] = target
		}
		for _, k := range sortedKeys(in) {
			switch k {
			case "port", "from":
			case "configuration":
				value, ok, err := jsonValue(in[k])
				if err != nil {
					c.drop(path+".configuration", err.Error())
				} else if ok {
					pc["configuration"] = value
				}
			default:
				c.drop(path+"."+k, "tinymod has no such field")
			}
		}
		out = append(out, pc)
	}
	return out
}

func (c *conversion) edges(v any) []any {
	list, ok := v.([]any)
	if !ok {
		if v != nil {
			c.drop("spec.edges", "not a list")
		}
		return nil
	}
	var out []any
	ids := map[string]bool{}
	for i, item := range list {
		path := fmt.Sprintf("spec.edges[%d]", i)
		in, ok := item.(map[string]any)
		if !ok {
			c.drop(path, "not an object")
			continue
		}
		id, _ := in["id"].(string)
		port, _ := in["port"].(string)
		to, _ := in["to"].(string)
		if id == "" {
			c.drop(path, "no id")
			continue
		}
		if ids[id] {
			c.drop(path, fmt.Sprintf("id %q used by an earlier edge", id))
			continue
		}
		if err := checkPort(port); err != nil {
			c.drop(path, "port: "+err.Error())
			continue
		}
		target, err := edgeTarget(to)
		if err != nil {
			c.drop(path, "to: "+err.Error())
			continue
		}
		ids[id] = true
		for _, k := range sortedKeys(in) {
			switch k {
			case "id", "port", "to":
			default:
				c.drop(path+"."+k, "tinymod has no such field")
			}
		}
		out = append(out, map[string]any{"id": id, "port": port, "to": target})
	}
	return out
}

func (c *conversion) signalSpec(spec map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range sortedKeys(spec) {
		switch k {
		case "node", "port", "data":
		default:
			c.drop("spec."+k, "tinymod has no such field")
		}
	}
	node, _ := spec["node"].(string)
	if node == "" {
		return c.skipSpec("spec.node is missing")
	}
	port, _ := spec["port"].(string)
	if err := checkPort(port); err != nil {
		return c.skipSpec("spec.port: " + err.Error())
	}
	out["node"], out["port"] = node, port
	// A signal delivered without its data would do something else: leave it out.
	value, ok, err := jsonValue(spec["data"])
	if err != nil {
		return c.skipSpec("spec.data: " + err.Error())
	}
	if ok {
		out["data"] = value
	}
	return out
}

func (c *conversion) flowSpec(spec map[string]any) map[string]any {
	for _, k := range sortedKeys(spec) {
		c.drop("spec."+k, "tinymod has no such field")
	}
	out := map[string]any{}
	if d := c.in.GetAnnotations()[sdkFlowDescription]; d != "" {
		out["description"] = d
	}
	return out
}

// edgeTarget turns the SDK's "<node>:<port>" into tinymod's "<node>.<port>".
func edgeTarget(s string) (string, error) {
	node, port, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(port, ":") {
		return "", fmt.Errorf("%q is not <node>:<port>", s)
	}
	if errs := validation.IsDNS1123Subdomain(node); len(errs) > 0 {
		return "", fmt.Errorf("%q: node: %s", s, strings.Join(errs, "; "))
	}
	if err := checkPort(port); err != nil {
		return "", fmt.Errorf("%q: %w", s, err)
	}
	return node + "." + port, nil
}

// checkPort applies tinymod's rules for port names.
func checkPort(port string) error {
	switch {
	case port == "":
		return errors.New("no port name")
	case len(port) > 63:
		return fmt.Errorf("port name %q is longer than 63 characters", port)
	case strings.Contains(port, "."):
		return fmt.Errorf("port name %q contains a dot", port)
	}
	return nil
}

// jsonValue decodes the SDK's base64 []byte holding JSON. ok is false when
// there is nothing (null, or no bytes). A value that is already JSON and not a
// string (an object, say) is taken as it is: the SDK's schema never lets one
// through, so it was written for tinymod.
func jsonValue(v any) (value any, ok bool, err error) {
	s, isString := v.(string)
	if !isString {
		return v, v != nil, nil
	}
	data, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false, fmt.Errorf("not base64 (%v)", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&value); err != nil {
		return nil, false, fmt.Errorf("base64 of something that is not JSON (%v)", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false, errors.New("base64 of something that is not one JSON value")
	}
	return value, true, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
