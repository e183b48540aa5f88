package cli

import (
	"fmt"
	"io"

	"github.com/go-logr/logr"
	uberzap "go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// newLogger returns the replica's logger, writing to w in format (json or
// text). Each key appears once in a line, whoever adds it: log pipelines that
// parse JSON keep only one of two equal keys, or reject the line.
func newLogger(format string, w io.Writer) (logr.Logger, error) {
	cfg := zapcore.EncoderConfig{
		TimeKey: "time", LevelKey: "level", MessageKey: "msg", NameKey: "logger",
		EncodeTime: zapcore.RFC3339NanoTimeEncoder, EncodeLevel: zapcore.LowercaseLevelEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(cfg)
	case "text":
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return logr.Logger{}, fmt.Errorf("--log-format must be json or text, not %q", format)
	}
	return zap.New(zap.Encoder(enc), zap.WriteTo(w), zap.RawZapOpts(uberzap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return uniqueKeys{Core: c}
	}))), nil
}

// uniqueKeys is a zapcore.Core that writes each key once. A key given again,
// by a later WithValues or by the call itself (a component that logs "node"
// on a logger that already carries it), keeps its place and takes the latest
// value, as a JSON reader that keeps the last of two equal keys would see it.
// It holds the context fields itself, since the wrapped core would encode
// them at once.
type uniqueKeys struct {
	zapcore.Core
	fields []zapcore.Field
}

func (c uniqueKeys) With(fields []zapcore.Field) zapcore.Core {
	return uniqueKeys{Core: c.Core, fields: unique(c.fields, fields)}
}

func (c uniqueKeys) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// Write gives the wrapped core a slice of its own: encoders may rewrite
// fields in place, and c.fields is shared by every goroutine that logs.
func (c uniqueKeys) Write(e zapcore.Entry, fields []zapcore.Field) error {
	return c.Core.Write(e, unique(c.fields, fields))
}

// unique returns a new slice of base then more in which a key that appears
// again in the same namespace replaces the earlier field in its place.
func unique(base, more []zapcore.Field) []zapcore.Field {
	out := make([]zapcore.Field, 0, len(base)+len(more))
	// scopes[i] is the namespace field i sits in ("" at the top); zap.Namespace
	// nests every later field, so keys repeat freely across namespaces.
	scopes := make([]string, 0, cap(out))
	scope := ""
	for _, list := range [][]zapcore.Field{base, more} {
		for _, f := range list {
			if f.Type == zapcore.NamespaceType {
				out, scopes = append(out, f), append(scopes, scope)
				scope += "\x00" + f.Key
				continue
			}
			if f.Type != zapcore.SkipType {
				if i := indexOf(out, scopes, scope, f.Key); i >= 0 {
					out[i] = f
					continue
				}
			}
			out, scopes = append(out, f), append(scopes, scope)
		}
	}
	return out
}

func indexOf(fields []zapcore.Field, scopes []string, scope, key string) int {
	for i, f := range fields {
		if f.Key == key && scopes[i] == scope && f.Type != zapcore.NamespaceType && f.Type != zapcore.SkipType {
			return i
		}
	}
	return -1
}
