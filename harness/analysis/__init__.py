"""Analysis from the CSV files alone: summaries, comparisons and figures."""
