"""The human-evaluation web app behind `vlmalign annotate`."""
