"""What a run's fields mean: readouts, the source attribution (with its autocrine part), the source experiment across presets, a sweep's table."""
