"""Comparison findings (比对) routed to the department responsible for correcting them."""
