"""MLflow tracking: one run per job, stages as nested runs, a parent run per sweep."""
