"""The worker process inside a container: imports a handler once, runs tasks one at a time,
talks to its agent only over the pipe protocol of :mod:`conveyor.runner.wire`."""
