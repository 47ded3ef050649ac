"""Policy administration: four-eyes proposals, reads, impact, checks."""
