//! The `ServiceActor` under a real actix system, its service fed by a pump and drained
//! by a flusher on in-memory rings: status, a panic, an exhausted budget.
