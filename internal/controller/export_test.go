package controller

// PrepareSignals readies r as SetupWithManager does, without a manager, so
// that a test can call Reconcile itself.
func PrepareSignals(r *TinySignalReconciler) error { return r.prepare() }
