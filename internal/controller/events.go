package controller

import (
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

type clientObject = client.Object

type (
	eventCreate  = event.TypedCreateEvent[clientObject]
	eventUpdate  = event.TypedUpdateEvent[clientObject]
	eventDelete  = event.TypedDeleteEvent[clientObject]
	eventGeneric = event.TypedGenericEvent[clientObject]
)
