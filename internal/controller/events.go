package controller

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tinymod/tinymod/api/v1alpha1"
	"github.com/tinymod/tinymod/internal/leader"
)

type clientObject = client.Object

type (
	eventCreate  = event.TypedCreateEvent[clientObject]
	eventUpdate  = event.TypedUpdateEvent[clientObject]
	eventDelete  = event.TypedDeleteEvent[clientObject]
	eventGeneric = event.TypedGenericEvent[clientObject]
)

// warning is a Warning Event for recordSurely to write.
type warning struct {
	regarding  corev1.ObjectReference
	reason     string
	action     string
	note       string
	controller string // the reporting controller: "tinymod/<module>"
	instance   string // the reporting replica
}

// recordSurely writes a Warning Event, trying again while the API server
// fails (up to five times, from half a second to four apart), for as long as
// term is valid; one it gives up on is logged. The Event recorder drops an Event that the API server refuses
// once; a panic's Event and a failed signal's are promises
// (docs/guarantees.md).
func recordSurely(c client.Client, term *leader.Term, w warning) {
	ev := &eventsv1.Event{
		// Named as the Event recorder names them: the same name on every
		// try, so a create whose answer was lost is not written twice.
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", w.regarding.Name, time.Now().UnixNano()), Namespace: w.regarding.Namespace},
		EventTime:  metav1.NowMicro(),
		Regarding:  w.regarding,
		Reason:     w.reason, Action: w.action, Note: w.note, Type: corev1.EventTypeWarning,
		ReportingController: w.controller, ReportingInstance: w.instance,
	}
	if len(ev.Note) > maxNote {
		// Cut on a character's boundary: a cut character would be sent as
		// U+FFFD, three bytes, and could take the note past the limit.
		cut := maxNote - len("...")
		for cut > 0 && !utf8.RuneStart(ev.Note[cut]) {
			cut--
		}
		ev.Note = ev.Note[:cut] + "..."
	}
	go func() {
		wait := 500 * time.Millisecond
		var err error
		for try := 0; try < 5 && term.Valid(); try++ {
			if try > 0 {
				select {
				case <-term.Context().Done():
					return
				case <-time.After(wait):
				}
				wait *= 2
			}
			ctx, cancel := context.WithTimeout(leader.WithTerm(context.Background(), term), 10*time.Second)
			err = c.Create(ctx, ev.DeepCopy())
			cancel()
			if err == nil || apierrors.IsAlreadyExists(err) {
				return
			}
			if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
				break // no try will do better
			}
		}
		if err != nil {
			log.Log.Error(err, "Warning Event not written", "regarding", w.regarding.Kind+"/"+w.regarding.Name, "reason", w.reason)
		}
	}()
}

// maxNote is the longest Event note the API server takes, in bytes.
const maxNote = 1024

// referTo is obj as the Regarding of an Event.
func referTo(obj client.Object, kind string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: kind,
		Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion()}
}
