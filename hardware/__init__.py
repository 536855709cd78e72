"""Board definitions (boards/*.json) and their checker."""
