"""Reports: tables and figures rendered only from result files, never from live runs."""
