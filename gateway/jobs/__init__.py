"""Jobs: admission, submission, the queue and its worker, releases, reads."""
