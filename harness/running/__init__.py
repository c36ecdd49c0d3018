"""Running a whole sweep: validation, cells on joblib / Dask / Ray, videos, crash-safe writing and resume."""
