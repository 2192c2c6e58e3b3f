"""The names of a training job's states, in one place: the store, the wire and every
module that reads a job record use these."""

QUEUED, RUNNING, COMPLETED, EARLY_STOPPED = "queued", "running", "completed", "early_stopped"
CANCELLED, FAILED, INTERRUPTED = "cancelled", "failed", "interrupted"
ACTIVE = (QUEUED, RUNNING)
FINAL = (COMPLETED, EARLY_STOPPED, CANCELLED, FAILED, INTERRUPTED)
