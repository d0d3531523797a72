"""Host-side evaluation: classification metrics and statistics for reporting."""
