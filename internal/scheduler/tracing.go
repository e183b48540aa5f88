package scheduler

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/tinymod/tinymod/api/v1alpha1"
)

// Span attributes of a delivery.
const (
	AttrModule    = "tinymod.module"
	AttrNode      = "tinymod.node"
	AttrComponent = "tinymod.component"
	AttrPort      = "tinymod.port"
	AttrEdge      = "tinymod.edge"
	AttrFrom      = "tinymod.from"
	AttrResult    = "tinymod.result"
)

// traced reports whether deliveries to port get a span: business ports and
// _control (a press is a delivery); not the runtime's own _settings,
// _reconcile and _client.
func traced(port string) bool {
	return !isSystemPort(port) || port == v1alpha1.ControlPort
}

// startSpan starts the span of one delivery to port, the child of whatever
// span ctx carries (the sender's, here or in another module).
func (inst *instance) startSpan(ctx context.Context, t trace.Tracer, edge, from, port string) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		attribute.String(AttrModule, inst.s.opts.Module.Name),
		attribute.String(AttrNode, inst.name),
		attribute.String(AttrComponent, inst.componentName),
		attribute.String(AttrPort, port),
	}
	if edge != "" {
		attrs = append(attrs, attribute.String(AttrEdge, edge))
	}
	if from != "" {
		attrs = append(attrs, attribute.String(AttrFrom, from))
	}
	return t.Start(ctx, inst.name+"."+port, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// endSpan ends a delivery's span with its result.
func endSpan(span trace.Span, result any) {
	if err, ok := result.(error); ok && err != nil {
		span.SetAttributes(attribute.String(AttrResult, "error"))
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(attribute.String(AttrResult, "ok"))
	}
	span.End()
}
