// Package manifest reads multi-document YAML into objects and applies them.
package manifest

import (
	"bytes"
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Objects parses every document of a YAML stream; empty documents are skipped.
func Objects(data []byte) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for i, doc := range bytes.Split(append([]byte("\n"), data...), []byte("\n---")) {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if obj.GetKind() == "" || obj.GetAPIVersion() == "" {
			return nil, fmt.Errorf("document %d: no apiVersion and kind", i+1)
		}
		out = append(out, obj)
	}
	return out, nil
}

// Apply creates the objects in ns, or updates those that exist.
func Apply(ctx context.Context, c client.Client, ns string, data []byte) ([]*unstructured.Unstructured, error) {
	objs, err := Objects(data)
	if err != nil {
		return nil, err
	}
	for _, obj := range objs {
		obj.SetNamespace(ns)
		err := c.Create(ctx, obj)
		if apierrors.IsAlreadyExists(err) && obj.GetName() != "" {
			existing := obj.DeepCopy()
			if err = c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err == nil {
				obj.SetResourceVersion(existing.GetResourceVersion())
				err = c.Update(ctx, obj)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	return objs, nil
}
